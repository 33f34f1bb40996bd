//! Text-format primitives: HELP/TYPE headers, numbers without formatting
//! machinery, and label escaping.

use std::fmt::Write as _;

pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(super) fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    header(out, name, "gauge", help);
    out.push_str(name);
    out.push(' ');
    push_float(out, v);
    out.push('\n');
}

pub(super) fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    out.push_str(name);
    out.push(' ');
    push_int(out, v);
    out.push('\n');
}

#[inline]
pub(super) fn push_int(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

pub(super) fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        push_int_signed(out, v as i64);
    } else {
        out.push_str(ryu::Buffer::new().format(v));
    }
}

fn push_int_signed(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Escape a label value per the text format: backslash, quote, newline.
/// Runs without any of them are copied whole.
pub fn escape_into(out: &mut String, v: &str) {
    let mut rest = v;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        let (plain, tail) = rest.split_at(i);
        out.push_str(plain);
        let mut chars = tail.chars();
        out.push_str(match chars.next() {
            Some('\\') => "\\\\",
            Some('"') => "\\\"",
            _ => "\\n",
        });
        rest = chars.as_str();
    }
    out.push_str(rest);
}
