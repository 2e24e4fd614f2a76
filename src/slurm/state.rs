//! Slurm node states: a base state plus flags, from every form Slurm 22.05 prints.
//!
//! - `scontrol show node` / `sinfo -o %T`: `IDLE+DRAIN`, `DOWN*+DRAIN`, `MIXED+DRAIN+REBOOT_REQUESTED`
//! - `sinfo -o %t` short forms: `drain`, `drng`, `down*`, `idle~`, `mix@`, `alloc^`, `maint$`
//! - `sinfo --json`: a lower-case base (`state`) and `state_flags`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How a node's state counts toward the capacity budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StateClass {
    /// Usable by jobs (idle, allocated, mixed, completing), possibly reserved.
    InService,
    /// A reboot is requested or in progress.
    Rebooting,
    /// Out of service in Slurm's eyes: DOWN, DRAIN, FAIL, NOT_RESPONDING, POWER_DOWN…
    Down,
}

/// A parsed node state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeState {
    /// Base state, upper case: IDLE, ALLOCATED, MIXED, DOWN, ERROR, FUTURE, UNKNOWN.
    pub base: String,
    /// Flags, upper case and canonical (`NOT_RESPONDING`, never `NO_RESPOND` or `*`).
    pub flags: BTreeSet<String>,
}

/// An unparseable node state string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised Slurm node state {input:?}: unknown part {part:?}")]
pub struct StateError {
    pub input: String,
    pub part: String,
}

const BASES: &[&str] = &[
    "IDLE",
    "ALLOCATED",
    "MIXED",
    "DOWN",
    "ERROR",
    "FUTURE",
    "UNKNOWN",
];

/// Flags that take a node out of service (the seed's list, plus their other spellings).
const DOWN_FLAGS: &[&str] = &[
    "DRAIN",
    "DRAINED",
    "DRAINING",
    "FAIL",
    "FAILING",
    "NOT_RESPONDING",
    "POWER_DOWN",
    "POWERED_DOWN",
    "POWERING_DOWN",
    "INVALID_REG",
];

const REBOOT_FLAGS: &[&str] = &["REBOOT_REQUESTED", "REBOOT_ISSUED"];

/// Canonical spelling of a state word, and whether it names a base state.
/// Returns `None` for words Slurm doesn't print.
fn canonical(word: &str) -> Option<(&'static str, bool)> {
    let w = word.to_ascii_uppercase();
    let canon: (&'static str, bool) = match w.as_str() {
        "IDLE" => ("IDLE", true),
        "ALLOCATED" | "ALLOC" => ("ALLOCATED", true),
        "MIXED" | "MIX" => ("MIXED", true),
        "DOWN" => ("DOWN", true),
        "ERROR" | "ERR" => ("ERROR", true),
        "FUTURE" | "FUTR" => ("FUTURE", true),
        "UNKNOWN" | "UNK" => ("UNKNOWN", true),
        "DRAIN" => ("DRAIN", false),
        "DRAINED" => ("DRAINED", false),
        "DRAINING" | "DRNG" => ("DRAINING", false),
        "FAIL" => ("FAIL", false),
        "FAILING" | "FAILG" => ("FAILING", false),
        "NOT_RESPONDING" | "NO_RESPOND" => ("NOT_RESPONDING", false),
        "POWER_DOWN" | "POW_DN" => ("POWER_DOWN", false),
        "POWERED_DOWN" => ("POWERED_DOWN", false),
        "POWERING_DOWN" => ("POWERING_DOWN", false),
        "POWER_UP" | "POW_UP" => ("POWER_UP", false),
        "POWERING_UP" => ("POWERING_UP", false),
        "POWER_DOWN_ASAP" => ("POWER_DOWN_ASAP", false),
        "POWER_DOWN_FORCE" => ("POWER_DOWN_FORCE", false),
        "COMPLETING" | "COMP" => ("COMPLETING", false),
        "MAINTENANCE" | "MAINT" => ("MAINTENANCE", false),
        "RESERVED" | "RESV" => ("RESERVED", false),
        "REBOOT_REQUESTED" | "REBOOT" | "BOOT" => ("REBOOT_REQUESTED", false),
        "REBOOT_ISSUED" => ("REBOOT_ISSUED", false),
        "PLANNED" | "PLND" => ("PLANNED", false),
        "CLOUD" => ("CLOUD", false),
        "DYNAMIC_FUTURE" => ("DYNAMIC_FUTURE", false),
        "DYNAMIC_NORM" => ("DYNAMIC_NORM", false),
        "INVALID_REG" | "INVAL" => ("INVALID_REG", false),
        "BLOCKED" => ("BLOCKED", false),
        "PERFCTRS" | "NPC" => ("PERFCTRS", false),
        _ => return None,
    };
    Some(canon)
}

/// Flags implied by sinfo's one-character suffixes (`man sinfo`, NODE STATE CODES).
fn suffix_flag(c: char) -> Option<&'static str> {
    Some(match c {
        '*' => "NOT_RESPONDING",
        '~' => "POWERED_DOWN",
        '#' => "POWERING_UP",
        '!' => "POWER_DOWN",
        '%' => "POWERING_DOWN",
        '$' => "MAINTENANCE",
        '@' => "REBOOT_REQUESTED",
        '^' => "REBOOT_ISSUED",
        '-' => "PLANNED",
        _ => return None,
    })
}

impl NodeState {
    /// Parse any textual form: `IDLE+DRAIN`, `DOWN*`, `drng`, `mix@`, `idle~`.
    pub fn parse(input: &str) -> Result<Self, StateError> {
        let trimmed = input.trim();
        let err = |part: &str| StateError {
            input: input.to_string(),
            part: part.to_string(),
        };
        if trimmed.is_empty() {
            return Err(err(""));
        }
        let mut base: Option<&'static str> = None;
        let mut flags = BTreeSet::new();
        for raw in trimmed.split('+') {
            let mut word = raw;
            while let Some(c) = word.chars().last() {
                match suffix_flag(c) {
                    Some(flag) => {
                        flags.insert(flag.to_string());
                        word = &word[..word.len() - c.len_utf8()];
                    }
                    None => break,
                }
            }
            if word.is_empty() {
                return Err(err(raw));
            }
            let (canon, is_base) = canonical(word).ok_or_else(|| err(raw))?;
            if is_base && base.is_none() {
                base = Some(canon);
            } else {
                flags.insert(canon.to_string());
            }
        }
        // sinfo's short forms name a drain state without a base: `drain`/`drained` is an
        // idle node, `drng`/`draining` a busy one.
        let base = base.unwrap_or_else(|| {
            if flags.contains("DRAINING") || flags.contains("COMPLETING") {
                "ALLOCATED"
            } else {
                "IDLE"
            }
        });
        Ok(Self::normalise(base.to_string(), flags))
    }

    /// From `sinfo --json`'s `state` and `state_flags`.
    pub fn from_parts<S: AsRef<str>>(state: &str, flags: &[S]) -> Result<Self, StateError> {
        let mut joined = state.to_string();
        for f in flags {
            joined.push('+');
            joined.push_str(f.as_ref());
        }
        Self::parse(&joined)
    }

    fn normalise(base: String, mut flags: BTreeSet<String>) -> Self {
        // `DRAINED`/`DRAINING` are sinfo's derived names for DRAIN on an idle or busy node.
        if flags.remove("DRAINED") | flags.remove("DRAINING") {
            flags.insert("DRAIN".to_string());
        }
        if flags.remove("FAILING") {
            flags.insert("FAIL".to_string());
        }
        Self { base, flags }
    }

    /// Whether the state carries `flag` (canonical upper-case name).
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    /// Out of service in Slurm (the seed's DOWN set): base DOWN or any drain/fail/
    /// not-responding/power-down flag. A rebooting node is also down.
    pub fn is_down(&self) -> bool {
        self.base == "DOWN" || DOWN_FLAGS.iter().any(|f| self.flags.contains(*f))
    }

    /// A reboot is requested or issued.
    pub fn is_rebooting(&self) -> bool {
        REBOOT_FLAGS.iter().any(|f| self.flags.contains(*f))
    }

    /// Drained or draining.
    pub fn is_drained(&self) -> bool {
        self.flags.contains("DRAIN")
    }

    /// In a MAINT reservation right now.
    pub fn in_maintenance(&self) -> bool {
        self.flags.contains("MAINTENANCE")
    }

    /// Able to run jobs: not down, not rebooting, not a future/unknown node.
    pub fn in_service(&self) -> bool {
        self.class() == StateClass::InService
    }

    /// How this state counts toward the budget.
    pub fn class(&self) -> StateClass {
        if self.is_rebooting() {
            StateClass::Rebooting
        } else if self.is_down() || matches!(self.base.as_str(), "ERROR" | "FUTURE" | "UNKNOWN") {
            StateClass::Down
        } else {
            StateClass::InService
        }
    }

    /// An idle node in service.
    pub fn idle() -> Self {
        Self {
            base: "IDLE".into(),
            flags: BTreeSet::new(),
        }
    }
}

impl fmt::Display for NodeState {
    /// `scontrol`'s form: `IDLE+DRAIN+MAINTENANCE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        for flag in &self.flags {
            write!(f, "+{flag}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for NodeState {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Whether `base` is one of Slurm's base states.
pub fn is_base_state(base: &str) -> bool {
    BASES.contains(&base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: &str) -> NodeState {
        NodeState::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn flags(s: &NodeState) -> Vec<&str> {
        s.flags.iter().map(String::as_str).collect()
    }

    type Case<'a> = (&'a str, &'a str, &'a [&'a str], StateClass);

    /// Each input parses to the base, flags and class given.
    fn check(cases: &[Case<'_>]) {
        for (input, base, fl, class) in cases {
            let s = st(input);
            assert_eq!(
                (s.base.as_str(), flags(&s), s.class()),
                (*base, fl.to_vec(), *class),
                "{input}"
            );
        }
    }

    #[test]
    fn composite_states_from_scontrol() {
        let cases: &[Case] = &[
            ("IDLE", "IDLE", &[], StateClass::InService),
            ("ALLOCATED", "ALLOCATED", &[], StateClass::InService),
            ("MIXED", "MIXED", &[], StateClass::InService),
            ("IDLE+DRAIN", "IDLE", &["DRAIN"], StateClass::Down),
            ("DOWN*", "DOWN", &["NOT_RESPONDING"], StateClass::Down),
            ("DOWN", "DOWN", &[], StateClass::Down),
            (
                "DOWN*+DRAIN",
                "DOWN",
                &["DRAIN", "NOT_RESPONDING"],
                StateClass::Down,
            ),
            (
                "ALLOCATED+MAINTENANCE+RESERVED",
                "ALLOCATED",
                &["MAINTENANCE", "RESERVED"],
                StateClass::InService,
            ),
            (
                "IDLE+MAINTENANCE+RESERVED",
                "IDLE",
                &["MAINTENANCE", "RESERVED"],
                StateClass::InService,
            ),
            (
                "DOWN+DRAIN+REBOOT_ISSUED",
                "DOWN",
                &["DRAIN", "REBOOT_ISSUED"],
                StateClass::Rebooting,
            ),
            (
                "MIXED+DRAIN+REBOOT_REQUESTED",
                "MIXED",
                &["DRAIN", "REBOOT_REQUESTED"],
                StateClass::Rebooting,
            ),
            (
                "ALLOCATED+DRAIN+REBOOT_REQUESTED",
                "ALLOCATED",
                &["DRAIN", "REBOOT_REQUESTED"],
                StateClass::Rebooting,
            ),
            (
                "IDLE+NOT_RESPONDING",
                "IDLE",
                &["NOT_RESPONDING"],
                StateClass::Down,
            ),
            (
                "IDLE+NO_RESPOND",
                "IDLE",
                &["NOT_RESPONDING"],
                StateClass::Down,
            ),
            ("IDLE+FAIL", "IDLE", &["FAIL"], StateClass::Down),
            (
                "ALLOCATED+FAILING",
                "ALLOCATED",
                &["FAIL"],
                StateClass::Down,
            ),
            ("IDLE+POWER_DOWN", "IDLE", &["POWER_DOWN"], StateClass::Down),
            (
                "IDLE+POWERING_DOWN",
                "IDLE",
                &["POWERING_DOWN"],
                StateClass::Down,
            ),
            (
                "IDLE+POWERED_DOWN",
                "IDLE",
                &["POWERED_DOWN"],
                StateClass::Down,
            ),
            (
                "IDLE+CLOUD+POWERED_DOWN",
                "IDLE",
                &["CLOUD", "POWERED_DOWN"],
                StateClass::Down,
            ),
            (
                "MIXED+COMPLETING",
                "MIXED",
                &["COMPLETING"],
                StateClass::InService,
            ),
            ("IDLE+PLANNED", "IDLE", &["PLANNED"], StateClass::InService),
            // 24.11 and 26.05: PLANNED beside busy base states too.
            (
                "MIXED+PLANNED",
                "MIXED",
                &["PLANNED"],
                StateClass::InService,
            ),
            (
                "ALLOCATED+PLANNED",
                "ALLOCATED",
                &["PLANNED"],
                StateClass::InService,
            ),
            (
                "IDLE+DRAIN+PLANNED",
                "IDLE",
                &["DRAIN", "PLANNED"],
                StateClass::Down,
            ),
            ("UNKNOWN", "UNKNOWN", &[], StateClass::Down),
            ("FUTURE", "FUTURE", &[], StateClass::Down),
            (
                "IDLE+INVALID_REG",
                "IDLE",
                &["INVALID_REG"],
                StateClass::Down,
            ),
        ];
        check(cases);
    }

    #[test]
    fn sinfo_long_forms() {
        // `sinfo -o %T` prints derived names in lower case.
        let cases: &[Case] = &[
            ("idle", "IDLE", &[], StateClass::InService),
            ("drained", "IDLE", &["DRAIN"], StateClass::Down),
            ("draining", "ALLOCATED", &["DRAIN"], StateClass::Down),
            ("down*", "DOWN", &["NOT_RESPONDING"], StateClass::Down),
            ("maint", "IDLE", &["MAINTENANCE"], StateClass::InService),
            ("reserved", "IDLE", &["RESERVED"], StateClass::InService),
            (
                "completing",
                "ALLOCATED",
                &["COMPLETING"],
                StateClass::InService,
            ),
            (
                "reboot_issued",
                "IDLE",
                &["REBOOT_ISSUED"],
                StateClass::Rebooting,
            ),
            (
                "reboot_requested",
                "IDLE",
                &["REBOOT_REQUESTED"],
                StateClass::Rebooting,
            ),
            ("failing", "IDLE", &["FAIL"], StateClass::Down),
            ("powered_down", "IDLE", &["POWERED_DOWN"], StateClass::Down),
        ];
        check(cases);
    }

    #[test]
    fn sinfo_short_forms_with_suffixes() {
        let cases: &[Case] = &[
            ("alloc", "ALLOCATED", &[], StateClass::InService),
            ("mix", "MIXED", &[], StateClass::InService),
            ("drain", "IDLE", &["DRAIN"], StateClass::Down),
            ("drng", "ALLOCATED", &["DRAIN"], StateClass::Down),
            (
                "drain*",
                "IDLE",
                &["DRAIN", "NOT_RESPONDING"],
                StateClass::Down,
            ),
            ("idle~", "IDLE", &["POWERED_DOWN"], StateClass::Down),
            ("idle#", "IDLE", &["POWERING_UP"], StateClass::InService),
            ("idle!", "IDLE", &["POWER_DOWN"], StateClass::Down),
            ("idle%", "IDLE", &["POWERING_DOWN"], StateClass::Down),
            ("idle$", "IDLE", &["MAINTENANCE"], StateClass::InService),
            (
                "mix@",
                "MIXED",
                &["REBOOT_REQUESTED"],
                StateClass::Rebooting,
            ),
            (
                "alloc^",
                "ALLOCATED",
                &["REBOOT_ISSUED"],
                StateClass::Rebooting,
            ),
            ("down^", "DOWN", &["REBOOT_ISSUED"], StateClass::Rebooting),
            ("idle-", "IDLE", &["PLANNED"], StateClass::InService),
            ("mixed-", "MIXED", &["PLANNED"], StateClass::InService),
            ("mix-", "MIXED", &["PLANNED"], StateClass::InService),
            ("resv", "IDLE", &["RESERVED"], StateClass::InService),
            ("maint", "IDLE", &["MAINTENANCE"], StateClass::InService),
            ("comp", "ALLOCATED", &["COMPLETING"], StateClass::InService),
            ("fail", "IDLE", &["FAIL"], StateClass::Down),
            ("failg", "IDLE", &["FAIL"], StateClass::Down),
            ("pow_dn", "IDLE", &["POWER_DOWN"], StateClass::Down),
            ("npc", "IDLE", &["PERFCTRS"], StateClass::InService),
            ("unk*", "UNKNOWN", &["NOT_RESPONDING"], StateClass::Down),
            ("futr", "FUTURE", &[], StateClass::Down),
            ("inval", "IDLE", &["INVALID_REG"], StateClass::Down),
            (
                "down*$",
                "DOWN",
                &["MAINTENANCE", "NOT_RESPONDING"],
                StateClass::Down,
            ),
        ];
        check(cases);
    }

    #[test]
    fn json_parts() {
        let s = NodeState::from_parts("down", &["DRAIN", "REBOOT_ISSUED"]).unwrap();
        assert_eq!(s.to_string(), "DOWN+DRAIN+REBOOT_ISSUED");
        assert!(s.is_down() && s.is_rebooting());
        let s = NodeState::from_parts::<&str>("idle", &[]).unwrap();
        assert!(s.in_service());
        let s = NodeState::from_parts("idle", &["MAINTENANCE", "RESERVED"]).unwrap();
        assert!(s.in_maintenance() && s.in_service());
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "IDLE+DRAIN",
            "DOWN+DRAIN+REBOOT_ISSUED",
            "MIXED",
            "ALLOCATED+MAINTENANCE+RESERVED",
        ] {
            assert_eq!(st(input).to_string(), input);
            assert_eq!(st(&st(input).to_string()), st(input));
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "  ", "SLEEPY", "IDLE+WHAT", "+", "IDLE+", "*", "idle?"] {
            let e = NodeState::parse(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("unrecognised Slurm node state"));
        }
    }

    #[test]
    fn base_states() {
        assert!(is_base_state("IDLE") && is_base_state("MIXED") && !is_base_state("DRAIN"));
    }
}
