//! Packet loss on the loopback, with nftables: a rule in a table of its own
//! drops a random share of the UDP packets to and from a port range (a peer's
//! RTP ports). Dropping the value removes the table.
//!
//! Packets are dropped on the receiving side (the input hook), as a network
//! would lose them: dropped on output, `sendto` fails with EPERM and a
//! sender such as baresip then reuses the lost packet's RTP timestamp for the
//! next one, so a loss looks like a sender clock running 5 % slow with no gap
//! to conceal.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Loss {
    table: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn nft(args: &str) {
    let out = Command::new("nft")
        .args(args.split(' '))
        .output()
        .expect("nft (package nftables): run through scripts/test.sh");
    assert!(out.status.success(), "nft {args}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Loss {
    /// Drops `percent` % of UDP packets, at random, whose source or
    /// destination port is in `first..=last`.
    pub fn random(percent: u32, first: u16, last: u16) -> Loss {
        Loss::with(&format!("numgen random mod 100 < {percent}"), first, last)
    }

    /// Drops every `n`th UDP packet each way (a loss pattern that is the
    /// same every run, for assertions that must not depend on luck).
    pub fn every(n: u32, first: u16, last: u16) -> Loss {
        Loss::with(&format!("numgen inc mod {n} == {}", n - 1), first, last)
    }

    fn with(condition: &str, first: u16, last: u16) -> Loss {
        let table = format!("ah_loss_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        nft(&format!("add table inet {table}"));
        nft(&format!("add chain inet {table} in {{ type filter hook input priority 0 ; }}"));
        for dir in ["dport", "sport"] {
            nft(&format!("add rule inet {table} in udp {dir} {first}-{last} {condition} drop"));
        }
        Loss { table }
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.table]).status();
    }
}
