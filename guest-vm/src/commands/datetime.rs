//! Date and time commands: `getDateTime`, `getTimeStamp`, `stampToDatetime`.
//!
//! `chrono` does the calendar work and strftime formatting/parsing; `jiff`
//! (with its bundled, compressed IANA database) only resolves a zone name to
//! the UTC offset and abbreviation in force at an instant. The clock is `SystemTime::now()`, which
//! on wasm32-wasip1 is WASI `clock_time_get`, i.e. the host's clock.
//! Formats are checked item by item before use (chrono's `Display` would
//! panic on an invalid one), so a bad format is a runtime error.

use std::fmt::Write as _;

use chrono::format::{Fixed, Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveTime, TimeDelta, TimeZone, Utc};

use super::Args;
use crate::error::Error;
use crate::eval::Interp;
use crate::limits::Limits;
use crate::value::{Value, parse_numeric_text};

/// Longest accepted strftime format, in bytes.
const MAX_FORMAT_BYTES: usize = 4096;
/// Largest accepted time delta or timestamp, in seconds (about 3000 years).
const MAX_SECONDS: f64 = 1.0e11;

fn rt(msg: impl Into<String>) -> Error {
    Error::runtime(msg)
}

/// `getDateTime`
pub(super) fn get_date_time(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let fmt = interp.text(a.value(0)?)?;
    let delta = seconds_arg(a.value(1)?, "getDateTime", "TimeDelta")?;
    let tz = interp.text(a.value(2)?)?;
    let value = date_time_at(now()?, &fmt, delta, &tz, &interp.limits)?;
    interp.set_var(a.target(3)?, value);
    Ok(())
}

/// `getTimeStamp`
pub(super) fn get_time_stamp(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let date = interp.text(a.value(0)?)?;
    let fmt = interp.text(a.value(1)?)?;
    let delta = seconds_arg(a.value(2)?, "getTimeStamp", "TimeDelta")?;
    let stamp = parse_timestamp(&date, &fmt, delta)?;
    interp.set_var(a.target(3)?, Value::Float(stamp));
    Ok(())
}

/// `stampToDatetime`
pub(super) fn stamp_to_datetime(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let stamp = seconds_arg(a.value(0)?, "stampToDatetime", "timestamp")?;
    let fmt = interp.text(a.value(1)?)?;
    let delta = seconds_arg(a.value(2)?, "stampToDatetime", "TimeDelta")?;
    let out = format_stamp(stamp, &fmt, delta, &interp.limits)?;
    interp.set_var(a.target(3)?, Value::str(out));
    Ok(())
}

/// Now, from the host's clock (WASI `clock_time_get` in the guest).
fn now() -> Result<DateTime<Utc>, Error> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| rt("getDateTime: the clock is before 1970"))?;
    let secs = i64::try_from(d.as_secs()).map_err(|_| rt("getDateTime: the clock is out of range"))?;
    DateTime::from_timestamp(secs, d.subsec_nanos()).ok_or_else(|| rt("getDateTime: the clock is out of range"))
}

/// Reads a number of seconds: int, float or numeric text; empty text (and
/// null) is 0.
fn seconds_arg(value: &Value, cmd: &str, param: &str) -> Result<f64, Error> {
    let bad = || {
        rt(format!(
            "{cmd}: '{param}' must be a number of seconds, got {} {}",
            value.type_name(),
            crate::commands::short(value)
        ))
    };
    let n = match value {
        Value::Null => 0.0,
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) if s.trim().is_empty() => 0.0,
        Value::Str(s) => match parse_numeric_text(s.trim()) {
            Some(Value::Int(i)) => i as f64,
            Some(Value::Float(f)) => f,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    if !n.is_finite() || n.abs() > MAX_SECONDS {
        return Err(rt(format!("{cmd}: '{param}' is out of range ({})", crate::commands::short(value))));
    }
    Ok(n)
}

/// Seconds as a chrono delta (nanosecond precision).
fn delta(secs: f64) -> TimeDelta {
    let whole = secs.floor();
    let nanos = (((secs - whole) * 1e9).round() as i64).clamp(0, 999_999_999);
    TimeDelta::seconds(whole as i64) + TimeDelta::nanoseconds(nanos)
}

fn shift(cmd: &str, at: DateTime<Utc>, secs: f64) -> Result<DateTime<Utc>, Error> {
    at.checked_add_signed(delta(secs)).ok_or_else(|| rt(format!("{cmd}: the date is out of range")))
}

/// The Unix timestamp as a float (seconds with the fraction).
fn timestamp(at: &DateTime<Utc>) -> f64 {
    at.timestamp() as f64 + f64::from(at.timestamp_subsec_nanos()) / 1e9
}

/// A time zone by IANA name (`Europe/Madrid`, `UTC`); empty is `None` (UTC).
fn zone(cmd: &str, name: &str) -> Result<Option<jiff::tz::TimeZone>, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    jiff::tz::TimeZone::get(name).map(Some).map_err(|_| rt(format!("{cmd}: unknown time zone '{name}'")))
}

/// The instant in `tz`: the local date with its offset, and the zone's
/// abbreviation then (`CET`, `CEST`, ...).
fn in_zone(cmd: &str, at: &DateTime<Utc>, tz: &jiff::tz::TimeZone) -> Result<(DateTime<FixedOffset>, String), Error> {
    let out_of_range = || rt(format!("{cmd}: the date is out of range"));
    let ts = jiff::Timestamp::new(at.timestamp(), 0).map_err(|_| out_of_range())?;
    let info = tz.to_offset_info(ts);
    let offset = FixedOffset::east_opt(info.offset().seconds()).ok_or_else(out_of_range)?;
    Ok((at.with_timezone(&offset), info.abbreviation().to_string()))
}

/// The strftime items of `format`, or an error naming the bad format.
fn items<'a>(cmd: &str, format: &'a str) -> Result<Vec<Item<'a>>, Error> {
    if format.len() > MAX_FORMAT_BYTES {
        return Err(rt(format!("{cmd}: the format is longer than {MAX_FORMAT_BYTES} bytes")));
    }
    let items: Vec<Item<'a>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(rt(format!("{cmd}: invalid date format '{format}'")));
    }
    Ok(items)
}

/// Formats a date with a strftime format; never panics. `zone_name`, when
/// given, is what `%Z` prints.
fn format<T: TimeZone>(
    cmd: &str,
    at: &DateTime<T>,
    format: &str,
    zone_name: Option<&str>,
    limits: &Limits,
) -> Result<String, Error>
where
    T::Offset: std::fmt::Display,
{
    let mut items = items(cmd, format)?;
    if let Some(name) = zone_name {
        for item in &mut items {
            if *item == Item::Fixed(Fixed::TimezoneName) {
                *item = Item::Literal(name);
            }
        }
    }
    let mut out = String::new();
    write!(out, "{}", at.format_with_items(items.iter()))
        .map_err(|_| rt(format!("{cmd}: cannot format the date with '{format}'")))?;
    if out.len() > limits.max_string_bytes {
        return Err(limits.string_error());
    }
    Ok(out)
}

/// `getDateTime` at a given instant (the command passes [`now`]).
pub(crate) fn date_time_at(
    now: DateTime<Utc>,
    fmt: &str,
    delta_secs: f64,
    tz: &str,
    limits: &Limits,
) -> Result<Value, Error> {
    const CMD: &str = "getDateTime";
    let tz = zone(CMD, tz)?;
    let at = shift(CMD, now, delta_secs)?;
    if fmt.is_empty() {
        return Ok(Value::Float(timestamp(&at)));
    }
    let text = match tz {
        None => format(CMD, &at, fmt, None, limits)?,
        Some(tz) => {
            let (local, abbreviation) = in_zone(CMD, &at, &tz)?;
            format(CMD, &local, fmt, Some(&abbreviation), limits)?
        }
    };
    Ok(Value::str(text))
}

/// `getTimeStamp`: parses `text` with `fmt` (UTC unless the format carries an
/// offset; a date alone is midnight), adds the delta, returns the timestamp.
fn parse_timestamp(text: &str, fmt: &str, delta_secs: f64) -> Result<f64, Error> {
    const CMD: &str = "getTimeStamp";
    let items = items(CMD, fmt)?;
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter())
        .map_err(|e| rt(format!("getTimeStamp: cannot read '{text}' with format '{fmt}': {e}")))?;
    let at = if parsed.offset().is_some() {
        parsed.to_datetime().map(|d| d.with_timezone(&Utc))
    } else if parsed.timestamp().is_some() || parsed.hour_div_12().is_some() || parsed.hour_mod_12().is_some() {
        parsed.to_naive_datetime_with_offset(0).map(|d| d.and_utc())
    } else {
        parsed.to_naive_date().map(|d| d.and_time(NaiveTime::MIN).and_utc())
    }
    .map_err(|e| rt(format!("getTimeStamp: cannot read '{text}' with format '{fmt}': {e}")))?;
    Ok(timestamp(&shift(CMD, at, delta_secs)?))
}

/// `stampToDatetime`: the timestamp plus the delta, formatted in UTC.
fn format_stamp(stamp: f64, fmt: &str, delta_secs: f64, limits: &Limits) -> Result<String, Error> {
    const CMD: &str = "stampToDatetime";
    let at = shift(CMD, DateTime::<Utc>::UNIX_EPOCH, stamp)?;
    let at = shift(CMD, at, delta_secs)?;
    format(CMD, &at, fmt, None, limits)
}
