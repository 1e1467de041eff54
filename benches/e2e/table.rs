//! Rendering the results table and the run's checks.

use super::*;

/// `value` rounded to 3 significant digits (45137 -> 45100, 0.012345 -> 0.0123).
pub(crate) fn sig3(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    let step = 10f64.powi(magnitude - 2);
    let rounded = (value / step).round() * step;
    let decimals = (2 - magnitude).max(0) as usize;
    format!("{rounded:.decimals$}")
}

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) rows: Vec<[String; 4]>,
    pub(crate) failed_checks: Vec<String>,
}

impl Table {
    /// Records and prints one row, its figure to 3 significant digits.
    pub(crate) fn row(&mut self, name: &str, value: f64, unit: &str, verdict: String) {
        let value = sig3(value);
        println!("  {name}: {value} {unit} {verdict}");
        self.rows.push([name.into(), value, unit.into(), verdict]);
    }

    pub(crate) fn check(&mut self, report: &Report) {
        if !report.ok() {
            self.failed_checks.push(format!(
                "{:?} / failed requests {}",
                report.check, report.failed_requests
            ));
        }
    }

    pub(crate) fn print(&self) {
        println!("\n| measurement | result | unit | target |\n|---|---:|---|---|");
        for [name, value, unit, verdict] in &self.rows {
            println!("| {name} | {value} | {unit} | {verdict} |");
        }
        if self.failed_checks.is_empty() {
            println!("\nevery load's /stats check passed (exact unique and duplicate counts)");
        } else {
            println!("\nCHECK FAILURES: {:?}", self.failed_checks);
            std::process::exit(1);
        }
    }
}
