//! The faults a sim can inject: each one is a way the seed's platform goes wrong, and each is
//! caught by named steps of the shipped playbooks (docs/sim.md has the table).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Login failures climb to 37/min: the P0 flag LOGIN_FAILURE_SPIKE (>20/min), overall
    /// RED, `/health/golive` answers 503.
    RedFlag,
    /// Queue lag reaches 45 s: the P1 flag QUEUE_LAG (>30 s), overall YELLOW.
    YellowFlag,
    /// Redis is unreachable: `redis-cli ping` fails and the P0 flag REDIS_DISCONNECT is raised.
    RedisDown,
    /// `pnpm provision:tenant` stops half-way: the RBAC roles are not seeded and the bootstrap
    /// admin has no password hash, so `rbac_seeded` and `admin_login_ready` fail.
    FailingPreflight,
    /// Every response of the platform is delayed (3 s unless set otherwise).
    SlowEndpoint,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::RedFlag,
        Fault::YellowFlag,
        Fault::RedisDown,
        Fault::FailingPreflight,
        Fault::SlowEndpoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::RedFlag => "red-flag",
            Fault::YellowFlag => "yellow-flag",
            Fault::RedisDown => "redis-down",
            Fault::FailingPreflight => "failing-preflight",
            Fault::SlowEndpoint => "slow-endpoint",
        }
    }

    /// One line for `runway sim fault --dir DIR` and the help text.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::RedFlag => "P0 LOGIN_FAILURE_SPIKE raised: /health/golive RED (503), a P0 alert",
            Fault::YellowFlag => "P1 QUEUE_LAG raised: /health/golive YELLOW, a P1 alert",
            Fault::RedisDown => "Redis unreachable: redis-cli ping fails, P0 REDIS_DISCONNECT",
            Fault::FailingPreflight => {
                "provision:tenant leaves roles unseeded and the admin without a password: preflight blocks activation"
            }
            Fault::SlowEndpoint => {
                "every platform response is delayed (3s by default): load burst and usage simulation fail"
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault `{s}`; the faults are {}", names.join(", "))
            })
    }
}
