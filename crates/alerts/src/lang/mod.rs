//! Alert languages.
//!
//! Each language is one file holding a `pub const STRINGS: Strings` table. To add
//! one, write `src/lang/<code>.rs` and add one line to the `languages!` list below;
//! the enum variant, the module and the `ALERT_LANGUAGE` parsing follow from it.
//!
//! Templates use `{name}` placeholders, filled by the renderer in a single pass
//! (inserted values are never re-scanned). Placeholders used: `{target}`,
//! `{duration}`, `{state}`, `{count}`.

use std::fmt;
use std::str::FromStr;

use heartbeat_core::Status;

/// A unit of a human duration, for [`Strings::unit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Hour,
    Minute,
    Second,
}

/// Every piece of text a language provides.
#[derive(Debug)]
pub struct Strings {
    /// ISO 639-1 code, the primary `ALERT_LANGUAGE` value.
    pub code: &'static str,
    /// Further accepted `ALERT_LANGUAGE` spellings (lowercase).
    pub aliases: &'static [&'static str],
    /// The language's own name for itself.
    pub name: &'static str,
    pub decimal_separator: char,
    /// Unit word for a quantity (a function so that languages can pluralise).
    pub unit: fn(Unit, u64) -> &'static str,
    /// Name of a probe status, shown next to the new state.
    pub status: fn(Status) -> &'static str,

    // New-state words.
    pub state_down: &'static str,
    pub state_up: &'static str,
    pub state_ok: &'static str,
    pub state_warning: &'static str,
    pub state_critical: &'static str,

    // Target alerts. Titles are plain text; headlines are Markdown.
    pub down_title: &'static str,
    pub down_headline: &'static str,
    pub recovered_title: &'static str,
    pub recovered_headline: &'static str,
    pub reminder_title: &'static str,
    pub reminder_headline: &'static str,

    // The agent's own connectivity check.
    pub connectivity_lost_title: &'static str,
    pub connectivity_lost_headline: &'static str,
    pub connectivity_restored_title: &'static str,
    pub connectivity_restored_headline: &'static str,

    // Outbound heartbeat worker. `{state}` is one of the `worker_state_*` words.
    pub worker_title: &'static str,
    pub worker_state_ok: &'static str,
    pub worker_state_blind: &'static str,
    pub worker_state_recovery_failed: &'static str,
    pub worker_state_critical: &'static str,
    pub worker_state_unreachable: &'static str,
    pub worker_state_unexpected: &'static str,
    pub worker_ok: &'static str,
    pub worker_blind: &'static str,
    pub worker_recovery_failed: &'static str,
    pub worker_critical: &'static str,
    pub worker_unreachable: &'static str,
    pub worker_unexpected: &'static str,

    // Field labels.
    pub label_state: &'static str,
    pub label_reason: &'static str,
    pub label_first_error: &'static str,
    pub label_since: &'static str,
    /// Start of an outage that has ended (a recovery is no longer "failing").
    pub label_outage_started: &'static str,
    pub label_confirmed_at: &'static str,
    pub label_recovered_at: &'static str,
    pub label_time: &'static str,
    pub label_duration: &'static str,
    pub label_down_for: &'static str,
    pub label_latency: &'static str,
    pub label_failed_checks: &'static str,
    /// Value of the failed-checks field; `{count}`.
    pub checks_in_a_row: &'static str,
    /// Shown when a value (e.g. latency) is not known.
    pub not_available: &'static str,

    /// Short title prefix for alerts raised while the agent's connectivity is down.
    pub held_back_tag: &'static str,
    /// The note explaining it.
    pub held_back_note: &'static str,
}

/// Declares the languages: one `Variant => module` line each, the first is the default.
macro_rules! languages {
    ($(#[$dm:meta])* $default:ident => $dmod:ident $(, $(#[$m:meta])* $variant:ident => $module:ident)* $(,)?) => {
        pub mod $dmod;
        $(pub mod $module;)*

        /// Language of alert texts (`ALERT_LANGUAGE`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum Language {
            $(#[$dm])*
            #[default]
            $default,
            $($(#[$m])* $variant,)*
        }

        impl Language {
            /// Every language, the default first.
            pub const ALL: &'static [Language] = &[Language::$default $(, Language::$variant)*];

            /// The language's text table.
            pub fn strings(self) -> &'static Strings {
                match self {
                    Language::$default => &$dmod::STRINGS,
                    $(Language::$variant => &$module::STRINGS,)*
                }
            }
        }
    };
}

languages! {
    /// English (default).
    English => en,
    /// Spanish.
    Spanish => es,
    /// Thai.
    Thai => th,
}

impl Language {
    /// ISO 639-1 code, e.g. `en`.
    pub fn code(self) -> &'static str {
        self.strings().code
    }

    /// The codes `ALERT_LANGUAGE` accepts, for help texts and errors.
    pub fn valid_codes() -> Vec<&'static str> {
        Language::ALL.iter().map(|l| l.code()).collect()
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// `ALERT_LANGUAGE` named no known language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert language {given:?}; expected one of {}", valid.join(", "))]
pub struct UnknownLanguage {
    pub given: String,
    pub valid: Vec<&'static str>,
}

impl FromStr for Language {
    type Err = UnknownLanguage;

    /// Case-insensitive; accepts the code, an alias, or a locale such as `es-PE`
    /// or `th_TH.UTF-8` (only the primary subtag matters).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_lowercase();
        let primary = wanted.split(['-', '_', '.']).next().unwrap_or_default();
        Language::ALL
            .iter()
            .copied()
            .find(|l| {
                let st = l.strings();
                [wanted.as_str(), primary]
                    .iter()
                    .any(|w| *w == st.code || st.aliases.contains(w))
            })
            .ok_or_else(|| UnknownLanguage {
                given: s.to_owned(),
                valid: Language::valid_codes(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_case_insensitively() {
        let cases = [
            ("en", Language::English),
            ("EN", Language::English),
            (" es ", Language::Spanish),
            ("Es", Language::Spanish),
            ("es-PE", Language::Spanish),
            ("th", Language::Thai),
            ("TH_th.UTF-8", Language::Thai),
            ("spanish", Language::Spanish),
            ("español", Language::Spanish),
            ("ไทย", Language::Thai),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Language>(), Ok(want), "{text}");
        }
    }

    #[test]
    fn unknown_language_lists_the_valid_ones() {
        let err = "fr".parse::<Language>().expect_err("fr is not provided");
        assert_eq!(err.valid, vec!["en", "es", "th"]);
        let text = err.to_string();
        assert!(
            text.contains("\"fr\"") && text.contains("en, es, th"),
            "{text}"
        );
        assert!("".parse::<Language>().is_err());
    }

    #[test]
    fn default_is_english_and_codes_are_unique() {
        assert_eq!(Language::default(), Language::English);
        let mut codes = Language::valid_codes();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Language::ALL.len());
    }
}
