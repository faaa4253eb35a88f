//! Property test of billing: random sequences of top-ups, rentals,
//! disconnects and reconnects, sandboxes failing and recovering, stops and
//! billing passes at random times (some skipped, some repeated), against an
//! in-memory store, each reproducible from its seed.
//!
//! `BILLING_PROPERTY_SEED=N` runs seed N alone; `BILLING_PROPERTY_SEEDS=N`
//! runs N seeds (2000 unless set).
//!
//! After every step: each currency sums to zero, no wallet, held or payable
//! is negative, what is held is exactly the rate of every period held and
//! not yet settled, and a renter is warned at most once per period. Once
//! everything is settled: every held period was charged exactly its
//! reachable seconds (connected, sandbox not unhealthy; from a model kept
//! here, second by second) times the rate over the period, rounded down;
//! periods the wallet could not hold were charged nothing; periods no pass
//! saw begin were charged at most that; and owners and the broker got what
//! was charged, split by the fee.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;

use super::pass::{bill_once_at, transfer_id};
use super::settings::BillingSettings;
use super::{meter, usage};
use crate::ledger::{Account, Currency, Transfer, TransferId};
use crate::store::{JOIN_GAP_SECS, RenterTerms, Store};
use crate::time::UnixTime;

const PERIOD: i64 = 100;
const RENTERS: i64 = 3;
const DEVICES: usize = 3;
const STEPS: usize = 60;

/// A device as the model sees it.
struct Device {
    id: i64,
    /// The owner's account; `None` for the operator's.
    owner: Option<i64>,
    rate: i64,
    /// Connected stretches `[since, until)`; the last may be open.
    connected: Vec<(i64, Option<i64>)>,
    /// Unhealthy stretches; the last may be open.
    unhealthy: Vec<(i64, Option<i64>)>,
}

impl Device {
    fn online(&self) -> bool {
        self.connected.last().is_some_and(|s| s.1.is_none())
    }

    fn sick(&self) -> bool {
        self.unhealthy.last().is_some_and(|s| s.1.is_none())
    }

    /// Whether second `s` was reachable, as known at `now`.
    fn reachable_at(&self, s: i64, now: i64) -> bool {
        let within = |v: &[(i64, Option<i64>)]| {
            v.iter()
                .any(|&(since, until)| since <= s && s < until.unwrap_or(now))
        };
        within(&self.connected) && !within(&self.unhealthy)
    }
}

struct Rental {
    id: RentalId,
    device: usize,
    renter: i64,
    rate: i64,
    started: i64,
    ended: Option<i64>,
    /// Periods some pass ran in while the rental was open.
    seen: HashSet<i64>,
    /// When the model's stop machinery will stop it (billing asked).
    stop_due: Option<usize>,
    /// Reachable seconds of each period as known when it could first be
    /// settled (a quick reconnection later may join a gap into the stretch
    /// before it, as uptime does).
    expected: HashMap<i64, i64>,
}

struct World {
    store: Store,
    settings: BillingSettings,
    rng: StdRng,
    now: i64,
    devices: Vec<Device>,
    rentals: Vec<Rental>,
    topups: i64,
    owner: i64,
    warned: HashSet<(RentalId, i64)>,
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let store = Store::open(Path::new(":memory:")).unwrap();
        let now = 1_000_000;
        let owner = store
            .add_user("owner@example.org", "h", false, UnixTime(0))
            .unwrap()
            .id;
        for r in 1..=RENTERS {
            let u = store
                .add_user(&format!("r{r}@example.org"), "h", false, UnixTime(0))
                .unwrap();
            assert_eq!(u.id, owner + r);
        }
        let mut devices = Vec::new();
        for d in 0..DEVICES {
            let name = DeviceName::parse(&format!("pi{d}")).unwrap();
            let (id, owner) = if d == 0 {
                (
                    store.add_device(&name, "h", None, UnixTime(0)).unwrap().id,
                    None,
                )
            } else {
                let id = store
                    .add_owned_device(&name, &format!("h{d}"), owner, i64::MAX, UnixTime(0))
                    .unwrap()
                    .id;
                (id, Some(owner))
            };
            let rate = rng.random_range(1..1_000i64);
            store.set_listing(id, true, Some(rate)).unwrap();
            store.set_online(id, UnixTime(now)).unwrap();
            store.set_sandbox(id, "ready", None, UnixTime(now)).unwrap();
            devices.push(Device {
                id,
                owner,
                rate,
                connected: vec![(now, None)],
                unhealthy: Vec::new(),
            });
        }
        let settings = BillingSettings {
            enabled: true,
            currency: usd(),
            fee_percent: rng.random_range(0..=100u8),
            period: Duration::from_secs(PERIOD as u64),
        };
        World {
            store,
            settings,
            rng,
            now,
            devices,
            rentals: Vec::new(),
            topups: 0,
            owner,
            warned: HashSet::new(),
        }
    }

    fn renter_id(&self, r: i64) -> i64 {
        // Renters were added right after the owner.
        self.owner + r
    }

    fn top_up(&mut self, renter: i64, amount: i64) {
        self.topups += 1;
        let t = Transfer::simple(
            TransferId::derive("topup", &["test", &self.topups.to_string()]).unwrap(),
            usd(),
            "top-up",
            Account::Clearing("test".into()),
            Account::Wallet(renter),
            amount,
        )
        .unwrap();
        self.store.post(&t, UnixTime(self.now)).unwrap();
    }

    fn rent(&mut self, d: usize, renter: i64) {
        let busy = self
            .rentals
            .iter()
            .any(|r| r.device == d && r.ended.is_none());
        if busy {
            return;
        }
        let id = RentalId::parse(&format!("rnt-{}", self.rentals.len())).unwrap();
        let terms = RenterTerms {
            renter_id: renter,
            hourly_rate: Some(self.devices[d].rate),
            max_open: 10,
            billed: true,
        };
        self.store
            .begin_rental(
                self.devices[d].id,
                &id,
                &[],
                Some(terms),
                UnixTime(self.now),
            )
            .unwrap();
        assert!(self.store.set_rental_active(&id, "renter").unwrap());
        self.rentals.push(Rental {
            id,
            device: d,
            renter,
            rate: self.devices[d].rate,
            started: self.now,
            ended: None,
            seen: HashSet::new(),
            stop_due: None,
            expected: HashMap::new(),
        });
    }

    fn stop(&mut self, i: usize) {
        if self.rentals[i].ended.is_some() {
            return;
        }
        let id = self.rentals[i].id.clone();
        self.store
            .set_rental_ending(&id, None, UnixTime(self.now))
            .unwrap();
        self.store.end_rental(&id, UnixTime(self.now)).unwrap();
        self.rentals[i].ended = Some(self.now);
    }

    fn disconnect(&mut self, d: usize) {
        let now = self.now;
        let dev = &mut self.devices[d];
        if dev.online() {
            self.store.set_offline(dev.id, UnixTime(now)).unwrap();
            dev.connected.last_mut().unwrap().1 = Some(now);
        }
    }

    fn reconnect(&mut self, d: usize) {
        let now = self.now;
        let dev = &mut self.devices[d];
        if dev.online() {
            return;
        }
        self.store.set_online(dev.id, UnixTime(now)).unwrap();
        // A reconnection soon after the last stretch ended continues it.
        let last = dev.connected.last_mut().unwrap();
        if last.1.is_some_and(|until| until >= now - JOIN_GAP_SECS) {
            last.1 = None;
        } else {
            dev.connected.push((now, None));
        }
    }

    fn report(&mut self, d: usize, healthy: bool) {
        let now = self.now;
        let dev = &mut self.devices[d];
        let state = if healthy { "rented" } else { "failed" };
        self.store
            .set_sandbox(dev.id, state, None, UnixTime(now))
            .unwrap();
        if healthy && dev.sick() {
            dev.unhealthy.last_mut().unwrap().1 = Some(now);
        } else if !healthy && !dev.sick() {
            dev.unhealthy.push((now, None));
        }
    }

    fn bill(&mut self) {
        let now = self.now;
        for r in self.rentals.iter_mut() {
            if r.ended.is_none() && (now - r.started) % PERIOD != 0 {
                // The period under way (at a boundary, one is over and the
                // next has not begun).
                r.seen.insert((now - r.started) / PERIOD);
            }
            // Every period over by now is settled by this pass.
            let dev = &self.devices[r.device];
            let mut k = r.expected.len() as i64;
            loop {
                let start = r.started + k * PERIOD;
                let access_end = (start + PERIOD).min(r.ended.unwrap_or(i64::MAX));
                if access_end > now || start >= access_end {
                    break;
                }
                let reachable = (start..access_end)
                    .filter(|&s| dev.reachable_at(s, now))
                    .count() as i64;
                r.expected.insert(k, reachable);
                k += 1;
            }
        }
        let outcome = bill_once_at(&self.store, &self.settings, UnixTime(now)).unwrap();
        for low in outcome.low_balance {
            assert!(low.left < low.rate, "a warning with enough left");
            assert!(
                self.warned.insert((low.rental.clone(), low.period)),
                "{} warned twice for period {}",
                low.rental,
                low.period
            );
        }
        for end in outcome.to_end {
            let i = self
                .rentals
                .iter()
                .position(|r| r.id == end.rental)
                .unwrap();
            assert!(self.rentals[i].ended.is_none(), "an ended rental to end");
            // The stop runs a little later, as it does in the background;
            // passes in between name the rental again.
            let due = self.rng.random_range(0..3usize);
            self.rentals[i].stop_due.get_or_insert(due);
        }
    }

    /// The stops billing asked for that are due.
    fn run_stops(&mut self) {
        for i in 0..self.rentals.len() {
            match self.rentals[i].stop_due {
                Some(0) => {
                    self.rentals[i].stop_due = None;
                    self.stop(i);
                }
                Some(n) => self.rentals[i].stop_due = Some(n - 1),
                None => {}
            }
        }
    }

    fn posted(&self, kind: &str, r: &Rental, k: i64) -> bool {
        self.store
            .transfer_posted(&transfer_id(kind, &r.id, k).unwrap())
            .unwrap()
    }

    /// What must hold after every step.
    fn check(&self) {
        let totals = self.store.ledger_totals().unwrap();
        assert!(totals.iter().all(|t| t.sum == 0), "{totals:?}");
        let balance = |a: &Account| self.store.balance(a, &usd()).unwrap();
        assert!(balance(&Account::Payable(self.owner)) >= 0);
        // What is held is the rate of every held period not yet settled;
        // a rental billing is done with holds nothing.
        let open: HashSet<RentalId> = self
            .store
            .rentals_to_bill()
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        for renter in 1..=RENTERS {
            let renter = self.renter_id(renter);
            assert!(balance(&Account::Wallet(renter)) >= 0);
            let mut expected = 0;
            for r in self.rentals.iter().filter(|r| r.renter == renter) {
                if !open.contains(&r.id) {
                    continue;
                }
                let legs = self.store.rental_legs(&r.id).unwrap();
                let periods = |kind: &str| -> HashSet<i64> {
                    legs.iter()
                        .filter(|l| l.kind == kind)
                        .map(|l| l.period)
                        .collect()
                };
                let settled = periods("settle");
                expected += r.rate * periods("hold").difference(&settled).count() as i64;
            }
            assert_eq!(
                balance(&Account::Held(renter)),
                expected,
                "held for account {renter}"
            );
        }
    }

    /// Runs the random steps, then stops everything and bills until done.
    fn run(&mut self) {
        for _ in 0..STEPS {
            self.now += self.rng.random_range(0..PERIOD);
            match self.rng.random_range(0..20u32) {
                0..=1 => {
                    let pick = self.rng.random_range(1..=RENTERS);
                    let renter = self.renter_id(pick);
                    let amount = self.rng.random_range(1..3_000i64);
                    self.top_up(renter, amount);
                }
                2..=3 => {
                    let d = self.rng.random_range(0..DEVICES);
                    let pick = self.rng.random_range(1..=RENTERS);
                    let renter = self.renter_id(pick);
                    self.rent(d, renter);
                }
                4 => {
                    if !self.rentals.is_empty() {
                        let i = self.rng.random_range(0..self.rentals.len());
                        self.stop(i);
                    }
                }
                5..=6 => {
                    let d = self.rng.random_range(0..DEVICES);
                    self.disconnect(d);
                }
                7..=8 => {
                    let d = self.rng.random_range(0..DEVICES);
                    self.reconnect(d);
                }
                9 => {
                    let online: Vec<i64> = self
                        .devices
                        .iter()
                        .filter(|d| d.online())
                        .map(|d| d.id)
                        .collect();
                    self.store
                        .touch_online(&online, UnixTime(self.now))
                        .unwrap();
                }
                10..=11 => {
                    let d = self.rng.random_range(0..DEVICES);
                    let healthy = self.rng.random_bool(0.5);
                    self.report(d, healthy);
                }
                12 => {
                    // A pass repeated at the same moment changes nothing.
                    self.bill();
                    self.bill();
                }
                13 => {
                    // No pass for a while (the broker was down).
                    self.now += self.rng.random_range(0..3 * PERIOD);
                }
                _ => self.bill(),
            }
            self.run_stops();
            self.check();
        }
        for i in 0..self.rentals.len() {
            self.stop(i);
        }
        self.bill();
        self.now += 2 * PERIOD;
        self.bill();
        self.check();
        assert_eq!(self.store.ledger_problems().unwrap(), Vec::<String>::new());
    }

    /// What must hold once everything is settled.
    fn check_settled(&self) {
        let mut owed: HashMap<Option<i64>, i64> = HashMap::new();
        let mut total = 0;
        for r in &self.rentals {
            let billing = self.store.rental_billing(r.id.as_str()).unwrap().unwrap();
            assert!(billing.closed, "{} is not closed", r.id);
            let ended = r.ended.unwrap();
            let legs = self.store.rental_legs(&r.id).unwrap();
            let shown =
                usage::usage_at(&self.store, &self.settings, &billing, UnixTime(self.now)).unwrap();
            let dev = &self.devices[r.device];
            let mut k = 0;
            while r.started + k * PERIOD < ended {
                let start = r.started + k * PERIOD;
                let access_end = (start + PERIOD).min(ended);
                let reachable = r.expected[&k];
                let full = r.rate * reachable / PERIOD;
                let charged: i64 = legs
                    .iter()
                    .filter(|l| l.kind == "settle" && l.period == k)
                    .filter(|l| l.account == "payable" || l.account == "revenue")
                    .map(|l| l.amount)
                    .sum();
                let held = self.posted("hold", r, k);
                let unpaid = billing.unpaid_period.is_some_and(|u| k >= u);
                let what = format!("{} period {k} ({reachable} s reachable)", r.id);
                if held {
                    assert!(!unpaid, "{what}: held after the wallet ran out");
                    assert_eq!(charged, full, "{what}: charged");
                } else if unpaid {
                    assert_eq!(
                        charged, 0,
                        "{what}: charged though the wallet could not hold it"
                    );
                } else {
                    assert!(
                        !r.seen.contains(&k),
                        "{what}: a pass ran in it and neither held it nor ended the rental"
                    );
                    assert!(
                        charged <= full,
                        "{what}: charged {charged}, more than {full}"
                    );
                }
                // The usage shown reads the stretches as they are now.
                let now_known = (start..access_end)
                    .filter(|&s| dev.reachable_at(s, self.now))
                    .count() as i64;
                let line = shown.periods.iter().find(|p| p.period == k + 1);
                assert!(
                    line.is_some() || shown.periods.len() == usage::MAX_PERIODS as usize,
                    "{what}: not shown"
                );
                if let Some(line) = line {
                    assert_eq!(
                        (line.charged_cents, line.reachable_secs),
                        (charged, now_known),
                        "{what}: usage shown"
                    );
                }
                let (owner_part, fee) = match dev.owner {
                    Some(_) => meter::split(charged, self.settings.fee_percent),
                    None => (0, charged),
                };
                *owed.entry(dev.owner).or_default() += owner_part;
                *owed.entry(None).or_default() += fee;
                total += charged;
                k += 1;
            }
        }
        let balance = |a: Account| self.store.balance(&a, &usd()).unwrap();
        let owner = Some(self.owner);
        assert_eq!(
            balance(Account::Payable(self.owner)),
            owed.get(&owner).copied().unwrap_or(0)
        );
        assert_eq!(
            balance(Account::Revenue),
            owed.get(&None).copied().unwrap_or(0)
        );
        let mut paid_in = 0;
        for renter in 1..=RENTERS {
            let renter = self.renter_id(renter);
            assert_eq!(balance(Account::Held(renter)), 0, "nothing left held");
            paid_in += balance(Account::Wallet(renter));
        }
        assert_eq!(-balance(Account::Clearing("test".into())), paid_in + total);
    }
}

fn run_seed(seed: u64) {
    let mut world = World::new(seed);
    world.run();
    world.check_settled();
}

/// Runs `seed`; the panic message if it failed.
fn failure(seed: u64) -> Option<String> {
    let e = catch_unwind(AssertUnwindSafe(|| run_seed(seed))).err()?;
    Some(
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

#[test]
fn billing_keeps_every_invariant_over_random_histories() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("BILLING_PROPERTY_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("BILLING_PROPERTY_SEEDS").unwrap_or(2000)).collect(),
    };
    // Seeds are independent: run them on every core.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut failed: Vec<(u64, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let seeds = &seeds;
                scope.spawn(move || {
                    seeds
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .find_map(|&seed| failure(seed).map(|why| (seed, why)))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("a worker"))
            .collect()
    });
    failed.sort();
    if let Some((seed, why)) = failed.first() {
        panic!("seed {seed} failed (BILLING_PROPERTY_SEED={seed} runs it alone): {why}");
    }
}
