//! Revenue analytics as the API answers them (`GET /api/v1/analytics/
//! revenue`), `ledger report --as-of` prints them and the console shows
//! them: one [`RevenueView`] from `projections::revenue::Figures`, its CSV
//! export ([`RevenueView::csv`]) and the MRR-by-month chart as a
//! server-rendered SVG ([`mrr_chart_svg`]: no script, no external
//! reference, text escaped).

use projections::revenue::{Billed, Figures};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

/// Money as text, two decimals (as invoices: `"2500.00"`).
fn money(value: Decimal) -> String {
    format!("{:.2}", value.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero))
}

fn ratio(value: Option<Decimal>) -> Option<String> {
    value.map(|v| format!("{:.4}", v))
}

/// A month's revenue figures (README, "Revenue analytics", has the
/// definitions). Money is USD text with two decimals; ratios are text with
/// four decimals, `null` when their denominator is zero.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevenueView {
    /// `YYYY-MM`.
    #[schema(example = "2026-03")]
    pub month: String,
    /// The last day counted (`YYYY-MM-DD`): the month's last, or today in the current month.
    pub through: String,
    /// MRR on `through`.
    #[schema(example = "2500.00")]
    pub mrr: String,
    /// 12 × MRR.
    pub arr: String,
    /// MRR on the day before the month's first.
    pub mrr_at_start: String,
    pub new_mrr: String,
    pub expansion_mrr: String,
    pub contraction_mrr: String,
    pub churned_mrr: String,
    pub organizations_at_start: u64,
    pub organizations_churned: u64,
    /// Organizations churned ÷ organizations at the start.
    #[schema(example = "0.2500")]
    pub logo_churn: Option<String>,
    /// Churned MRR ÷ MRR at the start.
    pub revenue_churn: Option<String>,
    /// MRR now of the organizations active 12 months before ÷ their MRR then.
    pub net_revenue_retention: Option<String>,
    pub active_organizations: u64,
    /// MRR ÷ active organizations.
    pub arpa: Option<String>,
    /// Usage and overage billed for the month, by tier.
    pub billed: Vec<BilledView>,
    /// MRR at each month's end (the current month's on `through`), oldest first.
    pub mrr_by_month: Vec<MonthMrr>,
}

/// Usage and overage billed for a month on one tier.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BilledView {
    #[schema(example = "starter")]
    pub tier: String,
    pub invoices: u64,
    /// The invoices' peak data volumes, summed (GB).
    pub peak_data_gb: String,
    /// Data overage and late-usage adjustments billed.
    pub overage: String,
}

/// MRR at a month's end.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthMrr {
    /// `YYYY-MM`.
    pub month: String,
    pub mrr: String,
}

fn billed(tier: domain::catalog::Tier, billed: &Billed) -> BilledView {
    BilledView {
        tier: tier.as_str().to_owned(),
        invoices: billed.invoices,
        peak_data_gb: billed.peak_data_gb.normalize().to_string(),
        overage: money(billed.overage),
    }
}

impl From<&Figures> for RevenueView {
    fn from(f: &Figures) -> Self {
        RevenueView {
            month: f.month.format("%Y-%m").to_string(),
            through: f.through.to_string(),
            mrr: money(f.mrr),
            arr: money(f.arr),
            mrr_at_start: money(f.mrr_at_start),
            new_mrr: money(f.new_mrr),
            expansion_mrr: money(f.expansion_mrr),
            contraction_mrr: money(f.contraction_mrr),
            churned_mrr: money(f.churned_mrr),
            organizations_at_start: f.organizations_at_start,
            organizations_churned: f.organizations_churned,
            logo_churn: ratio(f.logo_churn),
            revenue_churn: ratio(f.revenue_churn),
            net_revenue_retention: ratio(f.net_revenue_retention),
            active_organizations: f.active_organizations,
            arpa: f.arpa.map(money),
            billed: f.billed.iter().map(|(tier, b)| billed(*tier, b)).collect(),
            mrr_by_month: f
                .mrr_by_month
                .iter()
                .map(|(month, mrr)| MonthMrr { month: month.format("%Y-%m").to_string(), mrr: money(*mrr) })
                .collect(),
        }
    }
}

impl RevenueView {
    /// The CSV export: a `metric,value` section of the month's figures
    /// (an empty value for a ratio without denominator), then
    /// `tier,invoices,peak_data_gb,overage` rows, then `month,mrr` rows.
    /// Every field is a number, a date or a fixed word: nothing to quote.
    pub fn csv(&self) -> String {
        let mut out = String::from("metric,value\n");
        let none = String::new();
        let rows: [(&str, &String); 14] = [
            ("month", &self.month),
            ("through", &self.through),
            ("mrr", &self.mrr),
            ("arr", &self.arr),
            ("mrr_at_start", &self.mrr_at_start),
            ("new_mrr", &self.new_mrr),
            ("expansion_mrr", &self.expansion_mrr),
            ("contraction_mrr", &self.contraction_mrr),
            ("churned_mrr", &self.churned_mrr),
            ("logo_churn", self.logo_churn.as_ref().unwrap_or(&none)),
            ("revenue_churn", self.revenue_churn.as_ref().unwrap_or(&none)),
            ("net_revenue_retention", self.net_revenue_retention.as_ref().unwrap_or(&none)),
            ("arpa", self.arpa.as_ref().unwrap_or(&none)),
            ("active_organizations", &self.active_organizations.to_string()),
        ];
        for (name, value) in rows {
            out.push_str(&format!("{name},{value}\n"));
        }
        out.push_str(&format!("organizations_at_start,{}\n", self.organizations_at_start));
        out.push_str(&format!("organizations_churned,{}\n", self.organizations_churned));
        out.push_str("\ntier,invoices,peak_data_gb,overage\n");
        for b in &self.billed {
            out.push_str(&format!("{},{},{},{}\n", b.tier, b.invoices, b.peak_data_gb, b.overage));
        }
        out.push_str("\nmonth,mrr\n");
        for m in &self.mrr_by_month {
            out.push_str(&format!("{},{}\n", m.month, m.mrr));
        }
        out
    }
}

/// The chart's size in SVG user units.
pub const CHART_WIDTH: u32 = 640;
pub const CHART_HEIGHT: u32 = 240;

/// MRR by month as an SVG bar chart: one bar per month (a `<title>` with
/// its month and MRR for assistive technology and tooltips), the month
/// under each bar, the highest MRR on the axis; a `<desc>` says what the
/// bars are and which months they span. No script, no style sheet,
/// no external reference; every text is escaped.
pub fn mrr_chart_svg(months: &[MonthMrr]) -> String {
    let values: Vec<Decimal> = months.iter().map(|m| m.mrr.parse().unwrap_or(Decimal::ZERO)).collect();
    let top = values.iter().copied().fold(Decimal::ZERO, Decimal::max);
    let (left, bottom, plot_height) = (60u32, CHART_HEIGHT - 30, CHART_HEIGHT - 50);
    let slot = (CHART_WIDTH - left) / u32::try_from(months.len().max(1)).unwrap_or(1);
    let span = match (months.first(), months.last()) {
        (Some(first), Some(last)) => format!("from {} to {}", first.month, last.month),
        _ => "(there are none)".to_owned(),
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" role=\"img\" \
         aria-labelledby=\"mrr-chart-title\" aria-describedby=\"mrr-chart-desc\">\
         <title id=\"mrr-chart-title\">MRR by month</title>\
         <desc id=\"mrr-chart-desc\">{}</desc>\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{CHART_WIDTH}\" y2=\"{bottom}\" stroke=\"#555\"/>\
         <text x=\"{}\" y=\"20\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        escape(&format!("MRR at the end of each month {span}, one bar a month; the highest is {}.", money(top))),
        left - 4,
        escape(&money(top))
    );
    for (index, (month, value)) in months.iter().zip(&values).enumerate() {
        let height = if top.is_zero() {
            0
        } else {
            (value * Decimal::from(plot_height) / top).round().try_into().unwrap_or(0u32).min(plot_height)
        };
        let x = left + slot * u32::try_from(index).unwrap_or(0) + 4;
        let width = slot.saturating_sub(8).max(1);
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"{width}\" height=\"{height}\" fill=\"#2f6f9f\"><title>{}: {}</title></rect>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            bottom - height,
            escape(&month.month),
            escape(&month.mrr),
            x + width / 2,
            bottom + 14,
            escape(&month.month),
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Text escaped for SVG (XML) content and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_per_month_and_no_script() {
        let months = vec![
            MonthMrr { month: "2026-01".into(), mrr: "2500.00".into() },
            MonthMrr { month: "2026-02".into(), mrr: "5000.00".into() },
        ];
        let svg = mrr_chart_svg(&months);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("<title>2026-02: 5000.00</title>"));
        assert!(svg.contains(
            "<desc id=\"mrr-chart-desc\">MRR at the end of each month from 2026-01 to 2026-02, one bar a month; the \
             highest is 5000.00.</desc>"
        ));
        assert!(svg.contains("height=\"190\""), "the highest month fills the plot: {svg}");
        assert!(svg.contains("height=\"95\""), "half the MRR, half the height: {svg}");
        assert!(!svg.contains("<script") && !svg.contains("href"));
    }

    #[test]
    fn chart_text_is_escaped() {
        let svg = mrr_chart_svg(&[MonthMrr { month: "<b>&".into(), mrr: "0.00".into() }]);
        assert!(svg.contains("&lt;b&gt;&amp;") && !svg.contains("<b>"));
    }
}
