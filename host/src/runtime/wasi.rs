//! The WASI preview-1 functions a guest may import ([`avap_abi::import::WASI`]),
//! implemented here, each reaching nothing: no file, no directory, no
//! environment, no argument, no socket. What a guest built for
//! `wasm32-wasip1` calls of them is the clock, the random source, and
//! writes to its standard output and error, which go into two buffers of the
//! store, capped at [`Limits::max_stdio_bytes`](super::Limits) each and
//! shown in the response's `logs`.
//!
//! Written here rather than taken from `wasmtime-wasi`, whose context is
//! built for every execution (a random generator seeded from the system,
//! clocks, a resource table): the guest needs these fifteen functions and
//! nothing they could reach, and each one below says what it does.
//!
//! Every pointer and length comes from the guest and is checked against its
//! memory; a range outside it is `EFAULT` to the guest, never a host panic.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use avap_abi::import::{WASI, WASI_MODULE};

use super::limiter::StoreState;

/// WASI preview-1 error numbers used here.
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const IO: i32 = 29;
    pub const SPIPE: i32 = 70;
}

/// `__WASI_CLOCKID_*`.
const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_PROCESS_CPUTIME: i32 = 2;
const CLOCK_THREAD_CPUTIME: i32 = 3;

/// `__WASI_FILETYPE_CHARACTER_DEVICE`: what stdio is.
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
/// `__WASI_RIGHTS_FD_WRITE`.
const RIGHTS_FD_WRITE: u64 = 1 << 6;

/// The most bytes one `random_get` fills (the guest asks for little: a
/// hash seed, `randomString`'s words).
const MAX_RANDOM_BYTES: usize = 64 << 10;

/// `proc_exit`: the guest ended its own execution (a trap for the host).
#[derive(Debug, thiserror::Error)]
#[error("guest exited with status {0}")]
pub struct GuestExit(pub i32);

/// What a store holds for these functions: the two output buffers and
/// where the monotonic clock starts.
pub(super) struct Stdio {
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    cap: usize,
    started: Instant,
}

impl Stdio {
    pub(super) fn new(cap: usize) -> Self {
        Stdio { stdout: Vec::new(), stderr: Vec::new(), cap, started: Instant::now() }
    }
}

/// The guest's memory, once instantiated.
fn memory<'a>(caller: &'a mut Caller<'_, StoreState>) -> Option<&'a mut [u8]> {
    let memory = caller.data().memory?;
    Some(memory.data_mut(caller))
}

/// `[ptr, ptr + len)` within `size`, or `None`.
fn range(ptr: i32, len: usize, size: usize) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

/// Writes `bytes` at `ptr` in guest memory; `EFAULT` outside it.
fn put(caller: &mut Caller<'_, StoreState>, ptr: i32, bytes: &[u8]) -> i32 {
    let Some(mem) = memory(caller) else { return errno::FAULT };
    match range(ptr, bytes.len(), mem.len()) {
        Some(r) => {
            mem[r].copy_from_slice(bytes);
            errno::SUCCESS
        }
        None => errno::FAULT,
    }
}

fn put_u32s(caller: &mut Caller<'_, StoreState>, a: i32, b: i32, values: (u32, u32)) -> i32 {
    match put(caller, a, &values.0.to_le_bytes()) {
        errno::SUCCESS => put(caller, b, &values.1.to_le_bytes()),
        e => e,
    }
}

/// `fd_write` to fd 1 or 2: gathers the iovecs into the stream's buffer,
/// up to its cap (past it `EIO`, as a full pipe; the guest goes on).
fn fd_write(caller: &mut Caller<'_, StoreState>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    if fd != 1 && fd != 2 {
        return errno::BADF;
    }
    let Ok(count) = usize::try_from(iovs_len) else { return errno::INVAL };
    let Some(memory) = caller.data().memory else { return errno::FAULT };
    let (mem, state) = memory.data_and_store_mut(&mut *caller);
    let Some(list) = count.checked_mul(8).and_then(|len| range(iovs, len, mem.len())) else {
        return errno::FAULT;
    };
    let stdio = &mut state.stdio;
    let (buffer, cap) = if fd == 1 { (&mut stdio.stdout, stdio.cap) } else { (&mut stdio.stderr, stdio.cap) };
    let mut written = 0usize;
    for iov in mem[list].chunks_exact(8) {
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]) as usize;
        let Some(r) = range(ptr, len, mem.len()) else { return errno::FAULT };
        if buffer.len() + len > cap {
            return errno::IO;
        }
        buffer.extend_from_slice(&mem[r]);
        written += len;
    }
    let written = u32::try_from(written).unwrap_or(u32::MAX);
    put(caller, nwritten, &written.to_le_bytes())
}

/// `clock_time_get`: the host's wall clock, or a monotonic clock starting at
/// the execution's start (the CPU-time clocks read it too), in nanoseconds.
fn clock_time_get(caller: &mut Caller<'_, StoreState>, id: i32, out: i32) -> i32 {
    let nanos = match id {
        CLOCK_REALTIME => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
        CLOCK_MONOTONIC | CLOCK_PROCESS_CPUTIME | CLOCK_THREAD_CPUTIME => {
            caller.data().stdio.started.elapsed().as_nanos()
        }
        _ => return errno::INVAL,
    };
    put(caller, out, &u64::try_from(nanos).unwrap_or(u64::MAX).to_le_bytes())
}

/// `random_get`: the host's secure random source.
fn random_get(caller: &mut Caller<'_, StoreState>, buf: i32, len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else { return errno::INVAL };
    if len > MAX_RANDOM_BYTES {
        return errno::INVAL;
    }
    let Some(mem) = memory(caller) else { return errno::FAULT };
    let Some(r) = range(buf, len, mem.len()) else { return errno::FAULT };
    match getrandom::fill(&mut mem[r]) {
        Ok(()) => errno::SUCCESS,
        Err(_) => errno::IO,
    }
}

/// `fd_fdstat_get` of stdio: a character device; 1 and 2 writable.
fn fd_fdstat_get(caller: &mut Caller<'_, StoreState>, fd: i32, out: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return errno::BADF;
    }
    let rights = if fd == 0 { 0 } else { RIGHTS_FD_WRITE };
    let mut stat = [0u8; 24];
    stat[0] = FILETYPE_CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    put(caller, out, &stat)
}

/// Links the fifteen functions of [`WASI`] under `wasi_snapshot_preview1`.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    type C<'a, 'b> = Caller<'a, StoreState>;
    let m = WASI_MODULE;
    // No arguments and no environment: empty lists.
    linker.func_wrap(m, "args_get", |_: C, _: i32, _: i32| errno::SUCCESS)?;
    linker.func_wrap(m, "args_sizes_get", |mut c: C, n: i32, size: i32| put_u32s(&mut c, n, size, (0, 0)))?;
    linker.func_wrap(m, "environ_get", |_: C, _: i32, _: i32| errno::SUCCESS)?;
    linker.func_wrap(m, "environ_sizes_get", |mut c: C, n: i32, size: i32| put_u32s(&mut c, n, size, (0, 0)))?;
    linker.func_wrap(m, "clock_res_get", |mut c: C, id: i32, out: i32| match id {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_PROCESS_CPUTIME | CLOCK_THREAD_CPUTIME => {
            put(&mut c, out, &1u64.to_le_bytes())
        }
        _ => errno::INVAL,
    })?;
    linker.func_wrap(m, "clock_time_get", |mut c: C, id: i32, _precision: i64, out: i32| {
        clock_time_get(&mut c, id, out)
    })?;
    linker.func_wrap(m, "random_get", |mut c: C, buf: i32, len: i32| random_get(&mut c, buf, len))?;
    linker.func_wrap(m, "fd_write", |mut c: C, fd: i32, iovs: i32, n: i32, written: i32| {
        fd_write(&mut c, fd, iovs, n, written)
    })?;
    // Only stdio exists; closing it changes nothing.
    linker.func_wrap(
        m,
        "fd_close",
        |_: C, fd: i32| if (0..=2).contains(&fd) { errno::SUCCESS } else { errno::BADF },
    )?;
    linker.func_wrap(m, "fd_fdstat_get", |mut c: C, fd: i32, out: i32| fd_fdstat_get(&mut c, fd, out))?;
    linker.func_wrap(
        m,
        "fd_seek",
        |_: C, fd: i32, _: i64, _: i32, _: i32| {
            if (0..=2).contains(&fd) { errno::SPIPE } else { errno::BADF }
        },
    )?;
    // No directory is preopened.
    linker.func_wrap(m, "fd_prestat_get", |_: C, _: i32, _: i32| errno::BADF)?;
    linker.func_wrap(m, "fd_prestat_dir_name", |_: C, _: i32, _: i32, _: i32| errno::BADF)?;
    linker.func_wrap(m, "proc_exit", |_: C, code: i32| -> wasmtime::Result<()> { Err(GuestExit(code).into()) })?;
    linker.func_wrap(m, "sched_yield", |_: C| errno::SUCCESS)?;
    debug_assert_eq!(WASI.len(), 15, "every allowed WASI function is linked above");
    Ok(())
}
