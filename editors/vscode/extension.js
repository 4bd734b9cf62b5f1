'use strict';
// Starts `avap lsp` (the language server of the repository's `cli` crate) for
// AVAP files; highlighting comes from syntaxes/avap.tmLanguage.json alone.
const path = require('node:path');
const os = require('node:os');
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

// `avap.catalog`, made absolute: `~` is the home folder, a relative path is
// taken from the first workspace folder.
function catalogDir(value) {
  if (!value) return undefined;
  if (value === '~' || value.startsWith('~/')) value = path.join(os.homedir(), value.slice(1));
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  return path.isAbsolute(value) || !root ? value : path.join(root, value);
}

async function start() {
  const config = vscode.workspace.getConfiguration('avap');
  const command = config.get('path') || 'avap';
  const catalog = catalogDir(config.get('catalog'));
  client = new LanguageClient(
    'avap', // so vscode-languageclient also reads `avap.trace.server`
    'AVAP Language Server',
    { command, args: ['lsp'], transport: TransportKind.stdio },
    {
      documentSelector: [{ scheme: 'file', language: 'avap' }, { scheme: 'untitled', language: 'avap' }],
      initializationOptions: catalog ? { catalog } : {},
    },
  );
  try {
    await client.start();
  } catch (err) {
    client = undefined;
    const choice = await vscode.window.showErrorMessage(
      `Could not start the AVAP language server "${command} lsp": ${err && err.message ? err.message : err}. ` +
        'Install it from the repository with "cargo install --path cli" (it puts "avap" in ~/.cargo/bin), ' +
        'or set "avap.path" to the binary.',
      'Open Settings',
    );
    if (choice) vscode.commands.executeCommand('workbench.action.openSettings', 'avap.path');
  }
}

async function stop() {
  const running = client;
  client = undefined;
  // A server that already died cannot be stopped cleanly; nothing to report then.
  if (running) await running.stop().catch(() => {});
}

function activate(context) {
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('avap.path') || e.affectsConfiguration('avap.catalog')) {
        await stop();
        await start();
      }
    }),
  );
  return start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
