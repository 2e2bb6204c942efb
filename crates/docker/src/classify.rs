//! The pure part of a probe: a container's inspect answer → status and message.
//!
//! Nothing here does I/O, so every row of the mapping table is unit-tested with
//! hand-built inspect answers (the engine tests cover the rows a real engine can
//! be driven into on demand).

use bollard::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, Health, HealthStatusEnum,
};
use heartbeat_core::Status;

/// Longest health-check output or engine error text carried in a message, in characters.
pub(crate) const MAX_DETAIL_CHARS: usize = 200;

/// Maps an inspect answer to a status and, unless healthy, a message.
///
/// `restarted` is how many times the container restarted since the previous
/// probe of the same target (0 on the first probe: there is no baseline yet).
pub(crate) fn classify(
    info: &ContainerInspectResponse,
    restarted: i64,
) -> (Status, Option<String>) {
    let Some(state) = info.state.as_ref() else {
        return (
            Status::Unknown,
            Some("docker: the engine reported no state for the container".to_owned()),
        );
    };
    let restarts = restarted_text(restarted);
    match effective_status(state) {
        Some(ContainerStateStatusEnum::RUNNING) => {
            if let Some(restarts) = restarts {
                return (Status::Error, Some(restarts));
            }
            classify_health(state.health.as_ref())
        }
        Some(ContainerStateStatusEnum::RESTARTING) => {
            let mut details = Vec::new();
            if let Some(code) = state.exit_code {
                details.push(format!("last exit {code}"));
            }
            if state.oom_killed == Some(true) {
                details.push("OOM killed".to_owned());
            }
            details.extend(restarts);
            let message = if details.is_empty() {
                "restarting".to_owned()
            } else {
                format!("restarting ({})", details.join(", "))
            };
            (Status::Down, Some(message))
        }
        Some(ContainerStateStatusEnum::EXITED) => {
            let mut message = match state.exit_code {
                Some(code) => format!("exited ({code})"),
                None => "exited".to_owned(),
            };
            append_details(&mut message, state, restarts);
            (Status::Down, Some(message))
        }
        Some(ContainerStateStatusEnum::DEAD) => {
            let mut message = match state.exit_code {
                Some(code) if code != 0 => format!("dead ({code})"),
                _ => "dead".to_owned(),
            };
            append_details(&mut message, state, restarts);
            (Status::Down, Some(message))
        }
        Some(ContainerStateStatusEnum::CREATED) => {
            let mut message = "created (never started)".to_owned();
            append_details(&mut message, state, None);
            (Status::Down, Some(message))
        }
        Some(ContainerStateStatusEnum::PAUSED) => (Status::Down, Some("paused".to_owned())),
        Some(ContainerStateStatusEnum::REMOVING) => (Status::Down, Some("removing".to_owned())),
        Some(ContainerStateStatusEnum::STOPPING) => (Status::Down, Some("stopping".to_owned())),
        Some(ContainerStateStatusEnum::EMPTY) | None => (
            Status::Unknown,
            Some("docker: the engine reported an empty container state".to_owned()),
        ),
    }
}

/// The state's `Status`, or one derived from its flags when an engine leaves it out.
fn effective_status(state: &ContainerState) -> Option<ContainerStateStatusEnum> {
    match state.status {
        Some(ContainerStateStatusEnum::EMPTY) | None => {}
        Some(status) => return Some(status),
    }
    if state.dead == Some(true) {
        Some(ContainerStateStatusEnum::DEAD)
    } else if state.restarting == Some(true) {
        Some(ContainerStateStatusEnum::RESTARTING)
    } else if state.paused == Some(true) {
        Some(ContainerStateStatusEnum::PAUSED)
    } else if state.running == Some(true) {
        Some(ContainerStateStatusEnum::RUNNING)
    } else {
        None
    }
}

/// Docker's own health verdict for a running container.
fn classify_health(health: Option<&Health>) -> (Status, Option<String>) {
    let Some(health) = health else {
        return (Status::Healthy, None);
    };
    match health.status {
        Some(HealthStatusEnum::UNHEALTHY) => (
            Status::Error,
            Some(format!("unhealthy: {}", last_health_output(health))),
        ),
        Some(HealthStatusEnum::STARTING) => match health.failing_streak {
            // Never healthy yet, and its checks already fail: not yet "unhealthy"
            // only because the retries are not used up.
            Some(streak) if streak > 0 => (
                Status::Error,
                Some(format!(
                    "starting, health check failed {}: {}",
                    times(streak),
                    last_health_output(health)
                )),
            ),
            _ => (Status::Healthy, None),
        },
        Some(HealthStatusEnum::HEALTHY | HealthStatusEnum::NONE | HealthStatusEnum::EMPTY)
        | None => (Status::Healthy, None),
    }
}

/// The newest health-check log entry's output, one line, at most [`MAX_DETAIL_CHARS`].
fn last_health_output(health: &Health) -> String {
    let Some(last) = health.log.as_ref().and_then(|log| log.last()) else {
        return "no health check output".to_owned();
    };
    let output = last.output.as_deref().map(one_line).unwrap_or_default();
    if !output.is_empty() {
        return truncate(&output, MAX_DETAIL_CHARS);
    }
    match last.exit_code {
        Some(code) => format!("health check exited with {code}, no output"),
        None => "no health check output".to_owned(),
    }
}

/// Adds ", OOM killed", the engine's error text and the restarts to a down message.
fn append_details(message: &mut String, state: &ContainerState, restarts: Option<String>) {
    if state.oom_killed == Some(true) {
        message.push_str(", OOM killed");
    }
    if let Some(error) = state.error.as_deref().map(one_line)
        && !error.is_empty()
    {
        message.push_str(": ");
        message.push_str(&truncate(&error, MAX_DETAIL_CHARS));
    }
    if let Some(restarts) = restarts {
        message.push_str(", ");
        message.push_str(&restarts);
    }
}

fn restarted_text(restarted: i64) -> Option<String> {
    (restarted > 0).then(|| format!("restarted {}", times(restarted)))
}

fn times(n: i64) -> String {
    if n == 1 {
        "1 time".to_owned()
    } else {
        format!("{n} times")
    }
}

/// Trims and folds every run of whitespace (newlines included) into one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts `text` to at most `max` characters (never inside a character), marking the cut with `…`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let keep: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", keep.trim_end())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::HealthcheckResult;

    fn container(state: ContainerState) -> ContainerInspectResponse {
        ContainerInspectResponse {
            state: Some(state),
            ..Default::default()
        }
    }

    fn with_status(status: ContainerStateStatusEnum) -> ContainerState {
        ContainerState {
            status: Some(status),
            running: Some(status == ContainerStateStatusEnum::RUNNING),
            ..Default::default()
        }
    }

    fn health(status: HealthStatusEnum, streak: i64, output: &str) -> Health {
        Health {
            status: Some(status),
            failing_streak: Some(streak),
            log: Some(vec![
                HealthcheckResult {
                    exit_code: Some(0),
                    output: Some("older entry".into()),
                    ..Default::default()
                },
                HealthcheckResult {
                    exit_code: Some(1),
                    output: Some(output.into()),
                    ..Default::default()
                },
            ]),
        }
    }

    fn running_with(health: Health) -> ContainerInspectResponse {
        container(ContainerState {
            health: Some(health),
            ..with_status(ContainerStateStatusEnum::RUNNING)
        })
    }

    fn msg(r: (Status, Option<String>)) -> (Status, String) {
        (r.0, r.1.unwrap_or_default())
    }

    #[test]
    fn running_without_healthcheck_is_healthy() {
        let c = container(with_status(ContainerStateStatusEnum::RUNNING));
        assert_eq!(classify(&c, 0), (Status::Healthy, None));
    }

    #[test]
    fn health_verdicts() {
        let healthy = running_with(health(HealthStatusEnum::HEALTHY, 0, "ok"));
        assert_eq!(classify(&healthy, 0), (Status::Healthy, None));

        let starting = running_with(health(HealthStatusEnum::STARTING, 0, ""));
        assert_eq!(classify(&starting, 0), (Status::Healthy, None));

        let failing = running_with(health(HealthStatusEnum::STARTING, 2, "refused\n"));
        assert_eq!(
            msg(classify(&failing, 0)),
            (
                Status::Error,
                "starting, health check failed 2 times: refused".into()
            )
        );

        let unhealthy = running_with(health(
            HealthStatusEnum::UNHEALTHY,
            3,
            "  curl: (7) Failed to connect\n  to localhost port 80 \n",
        ));
        assert_eq!(
            msg(classify(&unhealthy, 0)),
            (
                Status::Error,
                "unhealthy: curl: (7) Failed to connect to localhost port 80".into()
            )
        );
    }

    #[test]
    fn unhealthy_output_is_truncated_and_empty_output_is_explained() {
        let long = "x".repeat(5000);
        let (status, message) = msg(classify(
            &running_with(health(HealthStatusEnum::UNHEALTHY, 1, &long)),
            0,
        ));
        assert_eq!(status, Status::Error);
        let detail = message.trim_start_matches("unhealthy: ");
        assert_eq!(detail.chars().count(), MAX_DETAIL_CHARS);
        assert!(detail.ends_with('…'));

        let (_, message) = msg(classify(
            &running_with(health(HealthStatusEnum::UNHEALTHY, 1, " \n")),
            0,
        ));
        assert_eq!(message, "unhealthy: health check exited with 1, no output");
    }

    #[test]
    fn stopped_states_are_down() {
        let cases = [
            (
                ContainerState {
                    exit_code: Some(137),
                    oom_killed: Some(true),
                    ..with_status(ContainerStateStatusEnum::EXITED)
                },
                "exited (137), OOM killed",
            ),
            (
                ContainerState {
                    exit_code: Some(0),
                    ..with_status(ContainerStateStatusEnum::EXITED)
                },
                "exited (0)",
            ),
            (
                ContainerState {
                    exit_code: Some(127),
                    error: Some("exec: \"nope\": executable file not found in $PATH".into()),
                    ..with_status(ContainerStateStatusEnum::EXITED)
                },
                "exited (127): exec: \"nope\": executable file not found in $PATH",
            ),
            (
                with_status(ContainerStateStatusEnum::CREATED),
                "created (never started)",
            ),
            (with_status(ContainerStateStatusEnum::PAUSED), "paused"),
            (
                with_status(ContainerStateStatusEnum::RESTARTING),
                "restarting",
            ),
            (with_status(ContainerStateStatusEnum::REMOVING), "removing"),
            (
                ContainerState {
                    exit_code: Some(0),
                    ..with_status(ContainerStateStatusEnum::DEAD)
                },
                "dead",
            ),
        ];
        for (state, expected) in cases {
            assert_eq!(
                msg(classify(&container(state), 0)),
                (Status::Down, expected.to_owned())
            );
        }
    }

    #[test]
    fn restarts_since_last_probe() {
        let running = container(with_status(ContainerStateStatusEnum::RUNNING));
        assert_eq!(
            msg(classify(&running, 1)),
            (Status::Error, "restarted 1 time".into())
        );
        // A restart outranks Docker's own health verdict.
        let unhealthy = running_with(health(HealthStatusEnum::UNHEALTHY, 1, "x"));
        assert_eq!(
            msg(classify(&unhealthy, 3)),
            (Status::Error, "restarted 3 times".into())
        );

        let restarting = container(ContainerState {
            exit_code: Some(1),
            restarting: Some(true),
            ..with_status(ContainerStateStatusEnum::RESTARTING)
        });
        assert_eq!(
            msg(classify(&restarting, 2)),
            (
                Status::Down,
                "restarting (last exit 1, restarted 2 times)".into()
            )
        );

        let exited = container(ContainerState {
            exit_code: Some(1),
            ..with_status(ContainerStateStatusEnum::EXITED)
        });
        assert_eq!(
            msg(classify(&exited, 4)),
            (Status::Down, "exited (1), restarted 4 times".into())
        );
    }

    #[test]
    fn missing_status_falls_back_to_flags_then_unknown() {
        let paused = container(ContainerState {
            running: Some(true),
            paused: Some(true),
            ..Default::default()
        });
        assert_eq!(msg(classify(&paused, 0)), (Status::Down, "paused".into()));
        let running = container(ContainerState {
            running: Some(true),
            ..Default::default()
        });
        assert_eq!(classify(&running, 0), (Status::Healthy, None));
        assert_eq!(
            classify(&container(ContainerState::default()), 0).0,
            Status::Unknown
        );
        assert_eq!(
            classify(&ContainerInspectResponse::default(), 0).0,
            Status::Unknown
        );
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("ab", 2), "ab");
    }
}
