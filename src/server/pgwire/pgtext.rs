//! PostgreSQL's own text forms for the values that the Arrow encoder renders
//! differently: timestamps and times without trailing fractional zeros
//! (`10:15:00`, `23:59:59.5`), and floats in PostgreSQL's shortest-precise style
//! (`3`, `1e+20`, `1e-05`). Grafana and psql parse and show these; fixing them here,
//! on the encoded rows, keeps one place that knows the rules.

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;

/// How one column's text must be rewritten.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Fix {
    None,
    Time,
    Float4,
    Float8,
}

/// The rewrite each column of a row description needs; `None` when no column needs one.
pub fn plan(fields: &[FieldInfo]) -> Option<Vec<Fix>> {
    let fixes: Vec<Fix> = fields
        .iter()
        .map(|f| {
            if f.format() != FieldFormat::Text {
                return Fix::None;
            }
            match f.datatype() {
                t if *t == Type::TIMESTAMP
                    || *t == Type::TIMESTAMPTZ
                    || *t == Type::TIME
                    || *t == Type::TIMETZ =>
                {
                    Fix::Time
                }
                t if *t == Type::FLOAT4 => Fix::Float4,
                t if *t == Type::FLOAT8 => Fix::Float8,
                _ => Fix::None,
            }
        })
        .collect();
    fixes.iter().any(|f| *f != Fix::None).then_some(fixes)
}

/// Rewrite the fields of an encoded row in place of the original.
pub fn rewrite(row: DataRow, fixes: &[Fix]) -> DataRow {
    let data = &row.data;
    let mut out = BytesMut::with_capacity(data.len());
    let mut pos = 0usize;
    for fix in fixes.iter().take(row.field_count.max(0) as usize) {
        let Some(len_bytes) = data.get(pos..pos + 4) else {
            return row;
        };
        let len = i32::from_be_bytes(len_bytes.try_into().expect("4 bytes"));
        pos += 4;
        if len < 0 {
            out.put_i32(len);
            continue;
        }
        let Some(value) = data.get(pos..pos + len as usize) else {
            return row;
        };
        pos += len as usize;
        let fixed = std::str::from_utf8(value).ok().and_then(|text| match fix {
            Fix::None => None,
            Fix::Time => Some(trim_fraction(text)),
            Fix::Float4 => text
                .parse::<f32>()
                .ok()
                .map(|v| float_text(&format!("{v:e}"), 6)),
            Fix::Float8 => text
                .parse::<f64>()
                .ok()
                .map(|v| float_text(&format!("{v:e}"), 15)),
        });
        match fixed {
            Some(text) => {
                out.put_i32(text.len() as i32);
                out.put_slice(text.as_bytes());
            }
            None => {
                out.put_i32(len);
                out.put_slice(value);
            }
        }
    }
    DataRow::new(out, row.field_count)
}

/// `10:15:00.000000` → `10:15:00`; `00.250000+00` → `00.25+00`.
fn trim_fraction(text: &str) -> String {
    let Some(dot) = text.find('.') else {
        return text.to_string();
    };
    let digits = text[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let fraction = text[dot + 1..dot + 1 + digits].trim_end_matches('0');
    let rest = &text[dot + 1 + digits..];
    if fraction.is_empty() {
        format!("{}{rest}", &text[..dot])
    } else {
        format!("{}.{fraction}{rest}", &text[..dot])
    }
}

/// PostgreSQL's float output from Rust's shortest `{:e}` form (`2.5e-10`): positional
/// when the decimal exponent is in [-4, precision), else `d.ddde±XX`.
fn float_text(sci: &str, precision: i32) -> String {
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci.to_string();
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci.to_string();
    };
    let (sign, mantissa) = mantissa
        .strip_prefix('-')
        .map(|m| ("-", m))
        .unwrap_or(("", mantissa));
    if mantissa.parse::<f64>().is_ok_and(|m| m == 0.0)
        || !mantissa.bytes().next().is_some_and(|b| b.is_ascii_digit())
    {
        return sci.replace("e0", "");
    }
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if exp < -4 || exp >= precision {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f8(v: f64) -> String {
        float_text(&format!("{v:e}"), 15)
    }

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(f8(3.0), "3");
        assert_eq!(f8(1e20), "1e+20");
        assert_eq!(f8(-2.5e-10), "-2.5e-10");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(0.00001), "1e-05");
        assert_eq!(f8(std::f64::consts::PI), "3.141592653589793");
        assert_eq!(f8(123456789012345.0), "123456789012345");
        assert_eq!(f8(1e15), "1e+15");
        assert_eq!(f8(-0.25), "-0.25");
        assert_eq!(f8(0.0), "0");
        assert_eq!(float_text(&format!("{:e}", 1e6f32), 6), "1e+06");
        assert_eq!(float_text(&format!("{:e}", 1.5f32), 6), "1.5");
    }

    #[test]
    fn fractions_lose_trailing_zeros() {
        assert_eq!(
            trim_fraction("2026-11-21 10:15:00.000000"),
            "2026-11-21 10:15:00"
        );
        assert_eq!(
            trim_fraction("2000-02-29 12:00:00.250000+00"),
            "2000-02-29 12:00:00.25+00"
        );
        assert_eq!(trim_fraction("10:15:00"), "10:15:00");
    }
}
