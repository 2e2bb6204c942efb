#![allow(clippy::unwrap_used)]

use super::*;
use heartbeat_core::{ExpectedStatus, ProbeMethod};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn errors_of(pairs: &[(&str, &str)]) -> Vec<ConfigError> {
    match AgentConfig::from_map(&env(pairs)) {
        Ok(_) => panic!("expected configuration errors for {pairs:?}"),
        Err(ConfigErrors(e)) => e,
    }
}

fn http(t: &Target) -> &heartbeat_core::HttpTarget {
    match &t.kind {
        TargetKind::Http(h) => h,
        TargetKind::Docker { .. } | TargetKind::Push(_) => panic!("{} is not http", t.name),
    }
}

#[test]
fn defaults_match_the_replaced_system() {
    let c = AgentConfig::from_map(&env(&[])).unwrap();
    assert_eq!(c.loop_interval, Duration::from_secs(10));
    assert_eq!(c.service_timeout, Duration::from_secs(2));
    assert_eq!(c.status_change_threshold, 4);
    assert_eq!(c.time_zone_name, "UTC");
    assert_eq!(c.sqlite_db_path, PathBuf::from("data/metrics.db"));
    assert!(c.force_ipv4);
    assert_eq!(c.ping_url.unwrap().as_str(), DEFAULT_PING_URL);
    assert!(c.dns_override.is_none());
    assert!(c.targets.is_empty());
}

#[test]
fn targets_are_discovered_with_their_case_and_options() {
    let c = AgentConfig::from_map(&env(&[
        ("SERVICE_URL_Api", "https://api.example.com/health"),
        ("SERVICE_URL_db", "docker:postgres-1"),
        (
            "SERVICE_HEADERS_Api",
            "x-check:true, Authorization:Bearer a:b:c",
        ),
        ("SERVICE_TIMEOUT_SECONDS_Api", "0.5"),
        ("SERVICE_METHOD_Api", "get"),
        ("SERVICE_EXPECTED_STATUS_Api", "200-299,418"),
        ("SERVICE_TIMEOUT_SECONDS", "3"),
    ]))
    .unwrap();
    let names: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Api", "db"]);
    let api = http(&c.targets[0]);
    assert_eq!(c.targets[0].timeout, Duration::from_millis(500));
    assert_eq!(api.method, ProbeMethod::Get);
    assert_eq!(api.expected, ExpectedStatus(vec![(200, 299), (418, 418)]));
    assert_eq!(api.headers.len(), 2);
    assert_eq!(api.headers[1].name, "Authorization");
    // Split at the first colon only: values may contain colons.
    assert_eq!(api.headers[1].value.expose(), "Bearer a:b:c");
    assert_eq!(c.targets[1].timeout, Duration::from_secs(3));
    assert_eq!(
        c.targets[1].kind,
        TargetKind::Docker {
            container: "postgres-1".into()
        }
    );
}

#[test]
fn every_bad_value_names_its_variable() {
    let cases: &[(&str, &str)] = &[
        ("SERVICE_URL_a", "ftp://example.com"),
        ("SERVICE_URL_a", "http://"),
        ("SERVICE_URL_a", "not a url"),
        ("SERVICE_URL_a", "docker:"),
        ("SERVICE_URL_a", "docker:bad name!"),
        ("SERVICE_URL_a", ""),
        ("SERVICE_URL_", "http://x"),
        ("LOOP_INTERVAL_SECONDS", "ten"),
        ("LOOP_INTERVAL_SECONDS", "0"),
        ("LOOP_INTERVAL_SECONDS", "-5"),
        ("LOOP_INTERVAL_SECONDS", "NaN"),
        ("SERVICE_TIMEOUT_SECONDS", "inf"),
        ("STATUS_CHANGE_THRESHOLD", "0"),
        ("STATUS_CHANGE_THRESHOLD", "2.5"),
        ("TZ", "Mars/Olympus"),
        ("PING_URL", "www.google.com"),
        ("FORCE_IPV4", "maybe"),
        ("INTERNAL_DNS_OVERRIDE_IP", "10.0.0.300"),
        ("INTERNAL_DNS_OVERRIDE_MODE", "magic"),
    ];
    for (key, value) in cases {
        let errors = errors_of(&[(key, value)]);
        assert_eq!(errors.len(), 1, "{key}={value:?}: {errors:?}");
        assert_eq!(errors[0].variable, *key, "{key}={value:?}: {errors:?}");
    }
}

#[test]
fn bad_per_target_options_name_their_variable_and_hide_header_values() {
    let cases: &[(&str, &str)] = &[
        ("SERVICE_HEADERS_a", "Authorization Bearer s3cr3t"),
        ("SERVICE_HEADERS_a", ":s3cr3t"),
        ("SERVICE_HEADERS_a", "bad header:s3cr3t"),
        ("SERVICE_HEADERS_a", "X:s3cr3t\u{7}"),
        ("SERVICE_TIMEOUT_SECONDS_a", "fast"),
        ("SERVICE_METHOD_a", "DELETE"),
        ("SERVICE_EXPECTED_STATUS_a", "2xx"),
        ("SERVICE_EXPECTED_STATUS_a", "299-200"),
        ("SERVICE_EXPECTED_STATUS_a", "700"),
        ("SERVICE_DNS_OVERRIDE_a", "perhaps"),
    ];
    for (key, value) in cases {
        let errors = errors_of(&[("SERVICE_URL_a", "http://a.example"), (key, value)]);
        assert_eq!(errors.len(), 1, "{key}={value:?}: {errors:?}");
        assert_eq!(errors[0].variable, *key);
        assert!(
            !errors[0].to_string().contains("s3cr3t"),
            "secret leaked: {}",
            errors[0]
        );
    }
}

#[test]
fn options_for_missing_targets_are_reported_as_typos() {
    let errors = errors_of(&[
        ("SERVICE_URL_api", "http://a.example"),
        ("SERVICE_HEADERS_API", "X:1"),
    ]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].variable, "SERVICE_HEADERS_API");
    assert!(errors[0].message.contains("SERVICE_URL_API"));
}

#[test]
fn http_options_on_a_docker_target_are_rejected() {
    let errors = errors_of(&[
        ("SERVICE_URL_db", "docker:pg"),
        ("SERVICE_HEADERS_db", "X:1"),
    ]);
    assert_eq!(errors[0].variable, "SERVICE_HEADERS_db");
}

#[test]
fn all_errors_are_reported_together() {
    let errors = errors_of(&[
        ("SERVICE_URL_a", "gopher://x"),
        ("SERVICE_URL_b", "docker:"),
        ("LOOP_INTERVAL_SECONDS", "x"),
    ]);
    let mut vars: Vec<&str> = errors.iter().map(|e| e.variable.as_str()).collect();
    vars.sort();
    assert_eq!(
        vars,
        ["LOOP_INTERVAL_SECONDS", "SERVICE_URL_a", "SERVICE_URL_b"]
    );
}

#[test]
fn dns_override_matches_exact_hosts_and_honours_opt_out() {
    let c = AgentConfig::from_map(&env(&[
        ("INTERNAL_DNS_OVERRIDE_IP", "10.0.0.5"),
        ("INTERNAL_DNS_OVERRIDE_HOSTS", "app.example.com"),
        ("SERVICE_URL_app", "https://app.example.com/"),
        // A substring match would wrongly catch this one.
        ("SERVICE_URL_other", "https://myapp.example.com.evil.net/"),
        ("SERVICE_URL_ip", "http://192.168.1.1/"),
    ]))
    .unwrap();
    let ip: IpAddr = "10.0.0.5".parse().unwrap();
    assert_eq!(
        http(&c.targets[0]).dns_override,
        Some((ip, DnsOverrideMode::Legacy))
    );
    assert_eq!(http(&c.targets[1]).dns_override, None);
    assert_eq!(http(&c.targets[2]).dns_override, None);

    let c = AgentConfig::from_map(&env(&[
        ("INTERNAL_DNS_OVERRIDE_IP", "10.0.0.5"),
        ("INTERNAL_DNS_OVERRIDE_MODE", "tls"),
        ("SERVICE_URL_a", "https://a.example.com/"),
        ("SERVICE_URL_b", "https://b.example.com/"),
        ("SERVICE_DNS_OVERRIDE_b", "false"),
    ]))
    .unwrap();
    assert_eq!(
        http(&c.targets[0]).dns_override,
        Some((ip, DnsOverrideMode::Tls))
    );
    assert_eq!(http(&c.targets[1]).dns_override, None);
    assert_eq!(
        c.tls_override_hosts(),
        vec![("a.example.com".to_owned(), ip)]
    );
}

#[test]
fn empty_ping_url_disables_the_connectivity_check() {
    let c = AgentConfig::from_map(&env(&[("PING_URL", "")])).unwrap();
    assert!(c.ping_url.is_none());
    let c = AgentConfig::from_map(&env(&[("PING_URL", "https://1.1.1.1/")])).unwrap();
    assert_eq!(c.ping_url.unwrap().as_str(), "https://1.1.1.1/");
}

#[test]
fn describe_redacts_header_values_and_url_credentials() {
    let c = AgentConfig::from_map(&env(&[
        ("SERVICE_URL_a", "https://user:pa55word@a.example.com/"),
        ("SERVICE_HEADERS_a", "Authorization:Bearer t0ken"),
    ]))
    .unwrap();
    let text = c.describe();
    assert!(text.contains("Authorization: <redacted>"), "{text}");
    assert!(
        !text.contains("t0ken") && !text.contains("pa55word"),
        "{text}"
    );
    assert!(!format!("{c:?}").contains("t0ken"));
}

#[test]
fn help_documents_every_variable_the_parser_reads() {
    let help = help_text();
    for name in [
        "LOOP_INTERVAL_SECONDS",
        "SERVICE_TIMEOUT_SECONDS",
        "STATUS_CHANGE_THRESHOLD",
        "TZ",
        "SQLITE_DB_PATH",
        "PING_URL",
        "FORCE_IPV4",
        "DOCKER_HOST",
        "INTERNAL_DNS_OVERRIDE_IP",
        "INTERNAL_DNS_OVERRIDE_MODE",
        "INTERNAL_DNS_OVERRIDE_HOSTS",
    ] {
        assert!(help.contains(name), "{name} missing from help");
    }
    for prefix in parse::PER_TARGET_PREFIXES {
        assert!(
            help.contains(&format!("{prefix}<name>")),
            "{prefix} missing"
        );
    }
}

#[test]
fn alerting_settings_have_sensible_defaults() {
    let c = AgentConfig::from_map(&env(&[])).unwrap();
    assert_eq!(c.alerts.thresholds.down_after, 4);
    assert_eq!(c.alerts.thresholds.recover_after, 1);
    assert_eq!(c.alerts.max_age, Duration::from_secs(86_400));
    assert!(c.alerts.reminder_interval.is_none());
    assert!(c.alerts.channels.is_empty() && c.alerts.heartbeat.is_none());
}

#[test]
fn bad_alerting_values_name_their_variable() {
    let cases: &[&[(&str, &str)]] = &[
        &[("ALERT_LANGUAGE", "klingon")],
        &[("ALERT_MAX_AGE", "forever")],
        &[("ALERT_REMINDER_INTERVAL", "5 fortnights")],
        &[("RECOVERY_THRESHOLD", "0")],
        &[("MAINTENANCE", "tomorrow morning")],
        &[("HEARTBEAT_URL", "https://hb.example/api")],
        &[("SECRET_KEY", "s3cr3t")],
        &[
            ("HEARTBEAT_URL", "hb.example/api"),
            ("SECRET_KEY", "s3cr3t"),
        ],
        &[("N8N_WEBHOOK_URL", "n8n.example/webhook")],
        &[("SMTP_HOST", "mail.example"), ("SMTP_PORT", "seventy")],
    ];
    let expected = [
        "ALERT_LANGUAGE",
        "ALERT_MAX_AGE",
        "ALERT_REMINDER_INTERVAL",
        "RECOVERY_THRESHOLD",
        "MAINTENANCE",
        "SECRET_KEY",
        "HEARTBEAT_URL",
        "HEARTBEAT_URL",
        "N8N_WEBHOOK_URL",
        "SMTP_PORT",
    ];
    for (pairs, var) in cases.iter().zip(expected) {
        let errors = errors_of(pairs);
        assert!(
            errors.iter().any(|e| e.variable == var),
            "{pairs:?}: expected an error for {var}, got {errors:?}"
        );
        assert!(errors.iter().all(|e| !e.to_string().contains("s3cr3t")));
    }
}

#[test]
fn maintenance_windows_apply_to_named_targets_only() {
    let c = AgentConfig::from_map(&env(&[
        ("SERVICE_URL_api", "http://api.example"),
        (
            "MAINTENANCE_api",
            "2026-01-01T00:00:00Z/2026-01-01T01:00:00Z",
        ),
    ]))
    .unwrap();
    let at = jiff::Timestamp::from_second(1_767_225_600 + 60)
        .unwrap()
        .as_millisecond();
    assert!(c.alerts.maintenance.active("api", at, &c.time_zone));
    assert!(!c.alerts.maintenance.active("web", at, &c.time_zone));
    let errors = errors_of(&[
        ("SERVICE_URL_api", "http://api.example"),
        ("MAINTENANCE_API", "daily 01:00-02:00"),
    ]);
    assert_eq!(errors[0].variable, "MAINTENANCE_API");
}

#[test]
fn every_documented_default_is_accepted_and_changes_nothing() {
    let implicit = format!("{:?}", AgentConfig::from_map(&env(&[])).unwrap());
    for variable in VARIABLES {
        if variable.name.contains('<') || variable.default.is_empty() {
            continue;
        }
        let explicit = AgentConfig::from_map(&env(&[(variable.name, variable.default)]))
            .unwrap_or_else(|e| {
                panic!(
                    "{}={} (its documented default) is rejected: {e}",
                    variable.name, variable.default
                )
            });
        // Unset, DOCKER_HOST is left to the Docker client, whose default it documents.
        if variable.name == "DOCKER_HOST" {
            continue;
        }
        assert_eq!(
            format!("{explicit:?}"),
            implicit,
            "{}={} is not the same as leaving it unset",
            variable.name,
            variable.default
        );
    }
}

#[test]
fn push_targets_parse_with_defaults_and_derived_tokens() {
    let c = AgentConfig::from_map(&env(&[
        ("ADMIN_TOKEN", "admin-token-0123456789"),
        ("SERVICE_URL_backup", "push://"),
        ("SERVICE_PERIOD_backup", "1d"),
        ("SERVICE_GRACE_backup", "90"),
        ("SERVICE_URL_nightly", "push://"),
        ("SERVICE_SCHEDULE_nightly", "30 2 * * 1-5"),
        ("SERVICE_TOKEN_nightly", "nightly-token-0123456789"),
    ]))
    .unwrap();
    let push = |name: &str| match &c.targets.iter().find(|t| t.name == name).unwrap().kind {
        TargetKind::Push(p) => p.clone(),
        _ => panic!("{name} is not push"),
    };
    let backup = push("backup");
    assert_eq!(backup.period, Duration::from_secs(86_400));
    assert_eq!(backup.grace, Duration::from_secs(90));
    assert!(backup.token_derived);
    assert_eq!(
        backup.token,
        derive_token(
            &heartbeat_core::Secret::new("admin-token-0123456789"),
            "backup"
        )
    );
    let nightly = push("nightly");
    assert_eq!(nightly.schedule.as_deref(), Some("30 2 * * 1-5"));
    assert_eq!(nightly.grace, DEFAULT_GRACE);
    assert!(!nightly.token_derived);
    assert_eq!(c.push.addr, Some("0.0.0.0:8101".parse().unwrap()));
    assert_eq!(c.push.auto_remove_after, None);
    // check-config shows the derived token but never a configured one or the admin token.
    let d = c.describe();
    assert!(d.contains(backup.token.expose()));
    assert!(!d.contains("nightly-token-0123456789") && !d.contains("admin-token-0123456789"));
}

#[test]
fn bad_push_values_name_their_variable() {
    let errors = errors_of(&[
        ("SERVICE_URL_a", "push://"),
        ("SERVICE_PERIOD_a", "soon"),
        ("SERVICE_GRACE_a", "0"),
        ("SERVICE_URL_b", "push://"),
        ("SERVICE_SCHEDULE_b", "every day"),
        ("SERVICE_TOKEN_b", "short"),
        ("SERVICE_URL_c", "push://"),
        ("SERVICE_URL_web", "https://example.com/"),
        ("SERVICE_PERIOD_web", "60"),
        ("SERVICE_METHOD_a", "GET"),
        ("AGENT_ADDR", "everywhere"),
        ("PUSH_RATE_LIMIT", "-1"),
        ("PUSH_BODY_LIMIT", "12"),
        ("PUSH_AUTO_REMOVE_AFTER", "sometime"),
    ]);
    let vars: Vec<&str> = errors.iter().map(|e| e.variable.as_str()).collect();
    for v in [
        "SERVICE_PERIOD_a",
        "SERVICE_GRACE_a",
        "SERVICE_SCHEDULE_b",
        "SERVICE_TOKEN_b",
        "SERVICE_TOKEN_c",
        "SERVICE_TOKEN_a",
        "SERVICE_PERIOD_web",
        "SERVICE_METHOD_a",
        "AGENT_ADDR",
        "PUSH_RATE_LIMIT",
        "PUSH_BODY_LIMIT",
        "PUSH_AUTO_REMOVE_AFTER",
    ] {
        assert!(vars.contains(&v), "{v} not reported: {errors:?}");
    }
    // A token error never repeats the value.
    assert!(errors.iter().all(|e| !e.message.contains("short")));
}

#[test]
fn two_push_targets_cannot_share_a_token() {
    let errors = errors_of(&[
        ("SERVICE_URL_a", "push://"),
        ("SERVICE_TOKEN_a", "same-token-0123456789"),
        ("SERVICE_URL_b", "push://"),
        ("SERVICE_TOKEN_b", "same-token-0123456789"),
    ]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].variable, "SERVICE_TOKEN_b");
}

#[test]
fn secret_key_never_derives_push_tokens() {
    // SECRET_KEY goes to HEARTBEAT_URL every cycle; its receiver must not be able to
    // compute push tokens from it.
    let errors = errors_of(&[
        ("SECRET_KEY", "s3cr3t-0123456789"),
        ("HEARTBEAT_URL", "http://worker.example/heartbeat"),
        ("SERVICE_URL_backup", "push://"),
    ]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].variable, "SERVICE_TOKEN_backup");
    assert!(
        errors[0].message.contains("ADMIN_TOKEN"),
        "{}",
        errors[0].message
    );
}

#[test]
fn cron_weekdays_follow_crontab_and_a_schedule_must_fire() {
    use jiff::Timestamp;
    let next_after = |expr: &str, at: &str| -> String {
        let s = push::parse_schedule(expr).unwrap();
        let at = at.parse::<Timestamp>().unwrap().to_zoned(TimeZone::UTC);
        s.after(at).next().unwrap().to_string()
    };
    // 2026-12-01 is a Tuesday: with every weekday allowed, 0-7 fires the next day.
    assert!(next_after("0 3 * * 0-7", "2026-12-01T04:00:00Z").starts_with("2026-12-02T03:00:00"));
    // 1 is Monday, 7 and 0 are Sunday.
    assert!(next_after("0 3 * * 1", "2026-12-01T04:00:00Z").starts_with("2026-12-07T03:00:00"));
    assert!(next_after("0 3 * * 7", "2026-12-01T04:00:00Z").starts_with("2026-12-06T03:00:00"));
    let errors = errors_of(&[
        ("ADMIN_TOKEN", "admin-token-0123456789"),
        ("SERVICE_URL_never", "push://"),
        ("SERVICE_SCHEDULE_never", "0 0 30 2 *"),
    ]);
    assert_eq!(errors[0].variable, "SERVICE_SCHEDULE_never");
    assert!(
        errors[0].message.contains("never fires"),
        "{}",
        errors[0].message
    );
}

#[test]
fn a_wrong_scheme_lists_every_kind_of_target() {
    let errors = errors_of(&[("SERVICE_URL_api", "htp://api.local/health")]);
    assert_eq!(
        errors[0].message,
        "unsupported scheme \"htp\"; expected http://, https://, docker:<container> or push://"
    );
}

#[test]
fn a_bad_url_does_not_hide_the_mistakes_in_its_http_options() {
    let errors = errors_of(&[
        ("SERVICE_URL_api", "htp://a.example"),
        ("SERVICE_HEADERS_api", "Authorization Bearer s3cr3t"),
        ("SERVICE_METHOD_api", "FETCH"),
        ("SERVICE_EXPECTED_STATUS_api", "2xx,abc"),
        ("SERVICE_DNS_OVERRIDE_api", "maybe"),
    ]);
    let variables: Vec<&str> = errors.iter().map(|e| e.variable.as_str()).collect();
    assert_eq!(
        variables,
        [
            "SERVICE_URL_api",
            "SERVICE_HEADERS_api",
            "SERVICE_METHOD_api",
            "SERVICE_EXPECTED_STATUS_api",
            "SERVICE_DNS_OVERRIDE_api",
        ],
        "{errors:?}"
    );
    assert!(errors.iter().all(|e| !e.message.contains("s3cr3t")));
}
