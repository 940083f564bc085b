//! The e-mails' words: a subject and a plain-text body per notice, from
//! plain data, so they can be checked without a server.
//!
//! The onboarding e-mail is the one place a license key is written
//! outside an HTTP answer. It exists only in memory, inside the message
//! handed to the SMTP client; nothing here logs.

use chrono::NaiveDate;
use domain::Timestamp;
use domain::notification::{UsageCheck, UsageLevel};

/// One e-mail's subject and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

/// What the e-mails say about a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    pub organization: String,
    pub tier: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
}

const SIGNATURE: &str = "\n-- \nThis message was sent by the license ledger because you are an administrator of this\norganization's subscription. Each notice is sent once.\n";

pub fn onboarding(about: &About, license_key: &str, upgrade: bool) -> Mail {
    let (subject, opening) = if upgrade {
        (
            format!("Your new {} license key for {}", about.tier, about.organization),
            format!(
                "{}'s subscription is now {}. A new license key was issued for it; the previous key keeps\nworking for a changeover period, then stops.",
                about.organization, about.tier
            ),
        )
    } else {
        (
            format!("Welcome: your {} license key for {}", about.tier, about.organization),
            format!(
                "Welcome! {}'s {} subscription runs from {} until {} (exclusive).",
                about.organization, about.tier, about.start_date, about.end_date
            ),
        )
    };
    let body = format!(
        "{opening}\n\nYour license key:\n\n{license_key}\n\nEnter it in your deployment's license settings; the deployment validates it online and keeps\nworking for 7 days without a connection after its last successful validation. Keep the key\nsecret: anyone who has it can activate it, up to your subscription's deployment limit.\n{SIGNATURE}"
    );
    Mail { subject, body }
}

pub fn expiry_reminder(about: &About, today: NaiveDate) -> Mail {
    let days = (about.end_date - today).num_days();
    Mail {
        subject: format!("{}'s {} subscription ends on {}", about.organization, about.tier, about.end_date),
        body: format!(
            "{}'s {} subscription ends on {} ({days} days from {today}) and will not renew, because\nauto-renewal is off. After that day its license keys stop validating.\n\nTo keep using the platform, contact us to renew before then.\n{SIGNATURE}",
            about.organization, about.tier, about.end_date
        ),
    }
}

pub fn usage_warning(about: &About, month: NaiveDate, check: &UsageCheck) -> Mail {
    let month = month.format("%B %Y");
    let metric = match check.metric {
        domain::notification::UsageMetric::Users => "active users",
        domain::notification::UsageMetric::DataVolumeGb => "data volume (GB)",
        domain::notification::UsageMetric::ApiCalls => "API calls",
    };
    let (subject, consequence) = match check.level {
        UsageLevel::Approaching => (
            format!("{}: {metric} at 80% of the {} limit ({month})", about.organization, about.tier),
            "You are approaching the limit of your plan.",
        ),
        UsageLevel::Reached => (
            format!("{}: {metric} reached the {} limit ({month})", about.organization, about.tier),
            "You have reached the limit of your plan. Usage over the data limit is billed as overage;\nnew users and API calls beyond their limits may be refused.",
        ),
    };
    Mail {
        subject,
        body: format!(
            "{}'s {metric} in {month}: {} of a limit of {} ({}%).\n\n{consequence} To raise the limit, upgrade the subscription\nor add extra data.\n{SIGNATURE}",
            about.organization,
            check.value,
            check.limit,
            (check.value * rust_decimal::Decimal::from(100) / check.limit).trunc(),
        ),
    }
}

pub fn payment_failed(about: &About, suspend_at: Timestamp) -> Mail {
    Mail {
        subject: format!("Payment failed for {}'s {} subscription", about.organization, about.tier),
        body: format!(
            "A payment for {}'s {} subscription failed. The subscription is past due; it keeps working\nuntil {}, when it will be suspended unless a payment succeeds before then.\n\nPlease check your payment method.\n{SIGNATURE}",
            about.organization,
            about.tier,
            suspend_at.to_rfc3339()
        ),
    }
}

pub fn suspended(about: &About) -> Mail {
    Mail {
        subject: format!("{}'s {} subscription is suspended", about.organization, about.tier),
        body: format!(
            "{}'s {} subscription is suspended: no payment succeeded within the grace period. Its license\nkeys answer SUSPENDED until a payment succeeds; then everything works again at once.\n{SIGNATURE}",
            about.organization, about.tier
        ),
    }
}

pub fn restored(about: &About) -> Mail {
    Mail {
        subject: format!("{}'s {} subscription is active again", about.organization, about.tier),
        body: format!(
            "A payment for {}'s {} subscription succeeded, and the subscription is active again.\nThank you.\n{SIGNATURE}",
            about.organization, about.tier
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::notification::UsageMetric;
    use rust_decimal::Decimal;

    fn about() -> About {
        About {
            organization: "Acme GmbH".into(),
            tier: "starter".into(),
            start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            end_date: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
        }
    }

    #[test]
    fn the_onboarding_mail_carries_the_key_on_a_line_of_its_own() {
        let mail = onboarding(&about(), "LK1-abc_DEF-123", false);
        assert!(mail.subject.contains("Acme GmbH") && mail.subject.contains("starter"), "{}", mail.subject);
        assert!(mail.body.lines().any(|line| line == "LK1-abc_DEF-123"), "{}", mail.body);
        assert!(mail.body.contains("2027-01-01"));
        assert!(onboarding(&about(), "LK1-x", true).subject.contains("new"));
    }

    #[test]
    fn warnings_and_reminders_name_their_numbers() {
        let check = UsageCheck {
            metric: UsageMetric::ApiCalls,
            level: UsageLevel::Approaching,
            value: Decimal::from(8500),
            limit: Decimal::from(10_000),
        };
        let mail = usage_warning(&about(), NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), &check);
        assert!(mail.subject.contains("API calls at 80%") && mail.subject.contains("January 2026"), "{}", mail.subject);
        assert!(mail.body.contains("8500 of a limit of 10000 (85%)"), "{}", mail.body);
        let reminder = expiry_reminder(&about(), NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        assert!(reminder.body.contains("30 days"), "{}", reminder.body);
    }
}
