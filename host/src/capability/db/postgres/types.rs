//! Values across the driver: result cells read in the binary format by
//! column type, and script values bound as the parameter types the server
//! inferred.

use std::str::FromStr;

use tokio_postgres::types::{FromSql, ToSql, Type};

use avap_abi::MAX_REPLY_BYTES;

use super::super::{Cell, Failure, Param, checked_json, describe, over_reply_cap};

/// A column's bytes in the binary format, whatever its type.
pub(super) struct RawCell<'a>(pub(super) Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawCell<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawCell(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawCell(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// One PostgreSQL value as a reply cell, by its column type.
pub(super) fn cell<'a>(name: &str, ty: &Type, raw: Option<&'a [u8]>) -> Result<Cell<'a>, Failure> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
    let Some(raw) = raw else { return Ok(Cell::Null) };
    let bad = |e: Box<dyn std::error::Error + Sync + Send>| Failure::Message(format!("column '{name}': {e}"));
    fn decode<'a, T: FromSql<'a>>(ty: &Type, raw: &'a [u8]) -> Result<T, Box<dyn std::error::Error + Sync + Send>> {
        T::from_sql(ty, raw)
    }
    Ok(match *ty {
        Type::BOOL => Cell::Bool(decode(ty, raw).map_err(bad)?),
        Type::INT2 => Cell::Int(decode::<i16>(ty, raw).map_err(bad)?.into()),
        Type::INT4 => Cell::Int(decode::<i32>(ty, raw).map_err(bad)?.into()),
        Type::INT8 => Cell::Int(decode(ty, raw).map_err(bad)?),
        Type::OID => Cell::Int(decode::<u32>(ty, raw).map_err(bad)?.into()),
        Type::FLOAT4 => Cell::Float(decode::<f32>(ty, raw).map_err(bad)?.into()),
        Type::FLOAT8 => Cell::Float(decode(ty, raw).map_err(bad)?),
        Type::NUMERIC => {
            let d: rust_decimal::Decimal = decode(ty, raw).map_err(|_| {
                Failure::Message(format!(
                    "column '{name}' holds a NUMERIC that cannot be returned as a number; cast it (e.g. {name}::text)"
                ))
            })?;
            // Whole numbers (SUM of integers, say) stay integers.
            match (d.scale(), i64::try_from(d)) {
                (0, Ok(n)) => Cell::Int(n),
                _ => Cell::Float(f64::try_from(d).unwrap_or(f64::NAN)),
            }
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => {
            Cell::Text(std::str::from_utf8(raw).map_err(|e| bad(e.into()))?)
        }
        Type::JSON => checked_json(name, std::str::from_utf8(raw).map_err(|e| bad(e.into()))?)?,
        Type::JSONB => match raw.split_first() {
            // The binary jsonb format: a version byte (1), then the text.
            Some((1, text)) => checked_json(name, std::str::from_utf8(text).map_err(|e| bad(e.into()))?)?,
            _ => return Err(Failure::Message(format!("column '{name}': unknown jsonb format"))),
        },
        Type::UUID => Cell::Owned(decode::<uuid::Uuid>(ty, raw).map_err(bad)?.to_string()),
        Type::TIMESTAMPTZ => {
            Cell::Owned(decode::<DateTime<Utc>>(ty, raw).map_err(bad)?.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }
        Type::TIMESTAMP => {
            Cell::Owned(decode::<NaiveDateTime>(ty, raw).map_err(bad)?.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
        }
        Type::DATE => Cell::Owned(decode::<NaiveDate>(ty, raw).map_err(bad)?.to_string()),
        Type::TIME => Cell::Owned(decode::<NaiveTime>(ty, raw).map_err(bad)?.to_string()),
        Type::BYTEA => {
            if raw.len() * 2 > MAX_REPLY_BYTES {
                return Err(over_reply_cap());
            }
            Cell::Owned(format!("\\x{}", hex::encode(raw)))
        }
        Type::VOID => Cell::Null,
        _ if ty.name() == "citext" => Cell::Text(std::str::from_utf8(raw).map_err(|e| bad(e.into()))?),
        _ => {
            return Err(Failure::Message(format!(
                "column '{name}' has SQL type {}, which ormDirect cannot return; cast it in the query (e.g. {name}::text)",
                ty.name().to_ascii_uppercase()
            )));
        }
    })
}

fn int_of(value: &Param) -> Option<i64> {
    // 2^63 as a float: the first value past i64's range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match value {
        Param::Int(i) => Some(*i),
        Param::Float(f) if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(f) => Some(*f as i64),
        Param::Text(s) => s.trim().parse().ok(),
        Param::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn float_of(value: &Param) -> Option<f64> {
    match value {
        Param::Int(i) => Some(*i as f64),
        Param::Float(f) => Some(*f),
        Param::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) type Bound<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// JSON text bound as `json` or `jsonb` as it is: never parsed into a tree.
/// (The text was validated with the request.)
#[derive(Debug)]
struct RawJson<'a>(std::borrow::Cow<'a, str>);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // The binary jsonb format: a version byte, then the text.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Binds `value` as the PostgreSQL type `ty` the server inferred.
pub(super) fn bind<'a>(value: &'a Param<'a>, ty: &Type) -> Result<Bound<'a>, String> {
    use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
    fn some<'a, T: ToSql + Sync + Send + 'a>(v: T) -> Bound<'a> {
        Box::new(Some(v))
    }
    if matches!(value, Param::Null) {
        return Ok(Box::new(None::<String>));
    }
    let expected =
        |what: &str| format!("expected {what} (SQL type {}), got {}", ty.name().to_ascii_uppercase(), describe(value));
    let int = || int_of(value).ok_or_else(|| expected("an integer"));
    let text = value.text();
    Ok(match *ty {
        Type::INT2 => some(i16::try_from(int()?).map_err(|_| expected("a 16-bit integer"))?),
        Type::INT4 => some(i32::try_from(int()?).map_err(|_| expected("a 32-bit integer"))?),
        Type::INT8 => some(int()?),
        Type::FLOAT4 => some(float_of(value).ok_or_else(|| expected("a number"))? as f32),
        Type::FLOAT8 => some(float_of(value).ok_or_else(|| expected("a number"))?),
        Type::NUMERIC => some(
            rust_decimal::Decimal::from_str(text.trim())
                .or_else(|_| rust_decimal::Decimal::from_scientific(text.trim()))
                .map_err(|_| expected("a number"))?,
        ),
        Type::BOOL => some(match value {
            Param::Bool(b) => *b,
            Param::Int(0) => false,
            Param::Int(1) => true,
            Param::Text(s) if ["true", "t", "1"].contains(&s.to_ascii_lowercase().as_str()) => true,
            Param::Text(s) if ["false", "f", "0"].contains(&s.to_ascii_lowercase().as_str()) => false,
            _ => return Err(expected("a boolean")),
        }),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => some(text.into_owned()),
        _ if ty.name() == "citext" => some(text.into_owned()),
        Type::JSON | Type::JSONB => some(RawJson(match value {
            Param::Json(raw) => std::borrow::Cow::Borrowed(raw.get()),
            other => std::borrow::Cow::Owned(other.json_text()),
        })),
        Type::UUID => some(uuid::Uuid::parse_str(text.trim()).map_err(|_| expected("a UUID"))?),
        Type::TIMESTAMPTZ => some(
            DateTime::parse_from_rfc3339(text.trim())
                .map(|d| d.with_timezone(&Utc))
                .or_else(|_| naive_datetime(&text).map(|n| n.and_utc()))
                .or_else(|_| {
                    float_of(value).and_then(|s| DateTime::<Utc>::from_timestamp_micros((s * 1e6) as i64)).ok_or(())
                })
                .map_err(|_| expected("an ISO 8601 date-time or a Unix timestamp"))?,
        ),
        Type::TIMESTAMP => some(naive_datetime(&text).map_err(|_| expected("an ISO 8601 date-time"))?),
        Type::DATE => some(NaiveDate::from_str(text.trim()).map_err(|_| expected("a date (YYYY-MM-DD)"))?),
        Type::TIME => some(NaiveTime::from_str(text.trim()).map_err(|_| expected("a time (HH:MM:SS)"))?),
        _ => {
            return Err(format!(
                "cannot bind a value as SQL type {}; cast the parameter in the query (e.g. ${{name}}::text)",
                ty.name().to_ascii_uppercase()
            ));
        }
    })
}

fn naive_datetime(text: &str) -> Result<chrono::NaiveDateTime, ()> {
    let text = text.trim();
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| chrono::NaiveDate::from_str(text).ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .ok_or(())
}
