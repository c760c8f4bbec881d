//! Network coordinates: an estimate of the round-trip time to any member, from a few measured ones.
//!
//! The model is Vivaldi's (Dabek, Cox, Kaashoek and Morris, SIGCOMM 2004), with heights, as Serf
//! uses it. Every member holds a point in an 8-dimensional space plus a height, in milliseconds.
//! The estimated round trip between two members is the distance between their points plus both
//! heights: the points model the core of the network, where distance is what latency grows with,
//! and a height models a member's access link, which every path to it crosses.
//!
//! Each direct probe measures a round trip to one member, and the ack carries that member's
//! coordinate. The prober then moves its own point as a spring would: away from the other's point
//! when the measured time is longer than the distance, towards it when shorter, by a step weighted
//! by how confident each side is in its coordinate (its `error`, a running estimate of its relative
//! prediction error). A member confident in its place moves little for an unsure one. Measurements
//! pass a filter first, the median of the last three to each member, so one delayed ack (a busy
//! receiver, a retransmission) does not throw a coordinate off.
//!
//! Every member probes every other in turn, so coordinates settle within a few rounds of probes,
//! and keep following the network as it changes. The estimate's error is measured in the
//! simulator against a latency matrix (`tests/simulation.rs`, figures in BENCHMARKS.md).
//!
//! Coordinates travel as fixed-point numbers (10 µs units, varint-encoded: about 25 bytes per ack).
//! A decoded coordinate is checked (finite, within bounds) before it is used; a local coordinate
//! that a hostile sequence of inputs still drove out of bounds is reset to the origin and counted.

use libm::{roundf, sqrtf};

/// Dimensions of the coordinate space (Serf's choice: enough for Internet latencies).
pub const DIMENSIONS: usize = 8;
/// The largest relative error a coordinate claims; new coordinates start there.
pub const MAX_ERROR: f32 = 1.5;
/// Heights never fall below this, in milliseconds: every path crosses some access link.
pub const MIN_HEIGHT_MS: f32 = 0.01;
/// Bound on any component and on the height, in milliseconds (100 s): past it a coordinate is
/// invalid.
pub const MAX_COMPONENT_MS: f32 = 100_000.0;

/// How fast the error estimate follows new samples (Vivaldi's `c_e`).
const ERROR_GAIN: f32 = 0.25;
/// How far one sample moves the coordinate, at full weight (Vivaldi's `c_c`).
const STEP: f32 = 0.25;
/// Round trips shorter than this count as this, in milliseconds: relative errors of near-zero
/// measurements (a millisecond clock reads 0) are meaningless.
const MIN_RTT_MS: f32 = 0.1;
/// Gravity towards the origin, in milliseconds: keeps a cluster's coordinates from drifting as a
/// whole without bending the distances between them (Serf's idea, weaker here).
const GRAVITY_MS: f32 = 2_000.0;
/// Fixed-point unit on the wire: 10 µs.
const WIRE_UNITS_PER_MS: f32 = 100.0;
/// Fixed-point unit of the error on the wire: 1/1000.
const WIRE_ERROR_UNITS: f32 = 1_000.0;

/// A member's place in the coordinate space. Compare two with [`Coordinate::distance_ms`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coordinate {
    /// The point, in milliseconds along each axis.
    pub vec: [f32; DIMENSIONS],
    /// The access-link part of every round trip to this member, in milliseconds.
    pub height: f32,
    /// The member's estimate of its own relative prediction error (0: exact, [`MAX_ERROR`]: no
    /// idea yet).
    pub error: f32,
}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate::ORIGIN
    }
}

impl Coordinate {
    /// Where every member starts: the origin, with the largest error.
    pub const ORIGIN: Coordinate = Coordinate { vec: [0.0; DIMENSIONS], height: MIN_HEIGHT_MS, error: MAX_ERROR };

    /// The estimated round trip between the two members, in milliseconds.
    pub fn distance_ms(&self, other: &Coordinate) -> f32 {
        norm(&sub(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Finite, within [`MAX_COMPONENT_MS`], the height at least [`MIN_HEIGHT_MS`] and the error
    /// within `0..=MAX_ERROR`.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|c| c.is_finite() && c.abs() <= MAX_COMPONENT_MS)
            && self.height.is_finite()
            && (MIN_HEIGHT_MS..=MAX_COMPONENT_MS).contains(&self.height)
            && self.error.is_finite()
            && (0.0..=MAX_ERROR).contains(&self.error)
    }

    /// Moves this coordinate after measuring `rtt_ms` to a member at `other`. `nudge` is a unit of
    /// randomness in `0..1`, used only when the two points coincide (every member starts at the
    /// origin) to pick a direction to move apart in. Returns false (and resets to the origin) if
    /// the result is not a valid coordinate.
    pub(crate) fn update(&mut self, other: &Coordinate, rtt_ms: f32, nudge: [f32; DIMENSIONS]) -> bool {
        let rtt = rtt_ms.max(MIN_RTT_MS);
        let dist = self.distance_ms(other);
        let total = self.error + other.error;
        let weight = if total > 0.0 { self.error / total } else { 0.5 };
        let relative = (dist - rtt).abs() / rtt;
        self.error = (relative * ERROR_GAIN * weight + self.error * (1.0 - ERROR_GAIN * weight)).min(MAX_ERROR);
        let force = STEP * weight * (rtt - dist);
        // The direction from the other's point to ours, heights included (they always add up).
        let mut diff = sub(&self.vec, &other.vec);
        let mut length = norm(&diff);
        if length < 1e-6 {
            diff = nudge;
            length = norm(&diff).max(1e-6);
        }
        let span = length + self.height + other.height;
        for (c, d) in self.vec.iter_mut().zip(diff.iter()) {
            *c += force * d / span;
        }
        self.height = (self.height + force * (self.height + other.height) / span).max(MIN_HEIGHT_MS);
        // Gravity: a pull towards the origin, in milliseconds, that grows with the square of the
        // distance from it.
        let from_origin = norm(&self.vec);
        if from_origin > 0.0 {
            let pull = (from_origin / GRAVITY_MS) * (from_origin / GRAVITY_MS);
            let keep = 1.0 - pull.min(from_origin) / from_origin;
            for c in &mut self.vec {
                *c *= keep;
            }
        }
        if self.is_valid() {
            true
        } else {
            *self = Coordinate::ORIGIN;
            false
        }
    }

    /// The fixed-point wire form: error (in thousandths), height, then each component (in 10 µs
    /// units).
    pub fn to_wire(self) -> [i64; DIMENSIONS + 2] {
        let mut out = [0i64; DIMENSIONS + 2];
        // Rounded, not truncated: a valid coordinate stays valid on the wire (a height at the
        // minimum would otherwise become 0).
        out[0] = roundf(self.error * WIRE_ERROR_UNITS) as i64;
        out[1] = roundf(self.height * WIRE_UNITS_PER_MS) as i64;
        for (o, c) in out[2..].iter_mut().zip(self.vec.iter()) {
            *o = roundf(c * WIRE_UNITS_PER_MS) as i64;
        }
        out
    }

    /// From the wire form; `None` unless the result is a valid coordinate.
    pub fn from_wire(w: &[i64; DIMENSIONS + 2]) -> Option<Coordinate> {
        let mut c = Coordinate {
            vec: [0.0; DIMENSIONS],
            error: w[0] as f32 / WIRE_ERROR_UNITS,
            height: w[1] as f32 / WIRE_UNITS_PER_MS,
        };
        for (v, x) in c.vec.iter_mut().zip(w[2..].iter()) {
            *v = *x as f32 / WIRE_UNITS_PER_MS;
        }
        c.is_valid().then_some(c)
    }
}

fn sub(a: &[f32; DIMENSIONS], b: &[f32; DIMENSIONS]) -> [f32; DIMENSIONS] {
    let mut out = [0.0; DIMENSIONS];
    for i in 0..DIMENSIONS {
        out[i] = a[i] - b[i];
    }
    out
}

fn norm(v: &[f32; DIMENSIONS]) -> f32 {
    sqrtf(v.iter().map(|c| c * c).sum())
}

/// The last three round trips measured to one member, for the median filter.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RttFilter {
    samples: [f32; 3],
    len: u8,
    next: u8,
}

impl RttFilter {
    /// Adds a sample and returns the median of the ones held (up to three).
    pub(crate) fn push(&mut self, rtt_ms: f32) -> f32 {
        self.samples[self.next as usize] = rtt_ms;
        self.next = (self.next + 1) % 3;
        self.len = (self.len + 1).min(3);
        let mut held = self.samples;
        let held = &mut held[..self.len as usize];
        held.sort_unstable_by(f32::total_cmp);
        held[held.len() / 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f32, height: f32, error: f32) -> Coordinate {
        let mut vec = [0.0; DIMENSIONS];
        vec[0] = x;
        Coordinate { vec, height, error }
    }

    #[test]
    fn the_distance_is_the_points_distance_plus_both_heights() {
        let a = at(3.0, 1.0, 0.5);
        let mut b = at(0.0, 2.0, 0.5);
        b.vec[1] = 4.0;
        assert!((a.distance_ms(&b) - (5.0 + 1.0 + 2.0)).abs() < 1e-4);
        assert_eq!(a.distance_ms(&b), b.distance_ms(&a));
    }

    #[test]
    fn two_members_measuring_each_other_settle_on_their_round_trip() {
        let (mut a, mut b) = (Coordinate::ORIGIN, Coordinate::ORIGIN);
        let mut nudge = [0.0; DIMENSIONS];
        nudge[0] = 1.0;
        for _ in 0..200 {
            let b_now = b;
            assert!(a.update(&b_now, 40.0, nudge));
            let a_now = a;
            assert!(b.update(&a_now, 40.0, nudge.map(|x| -x)));
        }
        assert!((a.distance_ms(&b) - 40.0).abs() < 1.0, "{}", a.distance_ms(&b));
        assert!(a.error < 0.05 && b.error < 0.05, "{} {}", a.error, b.error);
    }

    #[test]
    fn the_wire_form_round_trips_to_within_its_unit_and_rejects_what_is_out_of_bounds() {
        let mut c = at(-123.456, 7.5, 0.321);
        c.vec[7] = 99_999.0;
        let back = Coordinate::from_wire(&c.to_wire()).unwrap();
        for (x, y) in c.vec.iter().zip(back.vec.iter()) {
            assert!((x - y).abs() <= 0.011, "{x} {y}");
        }
        assert!((back.height - 7.5).abs() <= 0.011 && (back.error - 0.321).abs() <= 0.0011);
        let mut w = c.to_wire();
        w[2] = i64::MAX;
        assert_eq!(Coordinate::from_wire(&w), None, "a component past the bound");
        let mut w = c.to_wire();
        w[0] = -1;
        assert_eq!(Coordinate::from_wire(&w), None, "a negative error");
        let mut w = c.to_wire();
        w[1] = 0;
        assert_eq!(Coordinate::from_wire(&w), None, "a height below the minimum");
    }

    #[test]
    fn absurd_measurements_never_leave_an_invalid_coordinate() {
        let mut c = Coordinate::ORIGIN;
        let far = at(MAX_COMPONENT_MS, MAX_COMPONENT_MS, 0.0);
        for rtt in [f32::MAX, 1e30, 0.0, -5.0, 1e9, f32::MIN_POSITIVE] {
            c.update(&far, rtt, [1.0; DIMENSIONS]);
            assert!(c.is_valid(), "after {rtt}: {c:?}");
        }
    }

    #[test]
    fn the_filter_passes_the_median_of_the_last_three() {
        let mut f = RttFilter::default();
        assert_eq!(f.push(10.0), 10.0);
        assert_eq!(f.push(500.0), 500.0, "of two, the larger");
        assert_eq!(f.push(12.0), 12.0);
        assert_eq!(f.push(11.0), 12.0, "the one slow sample among the last three is passed over");
    }
}
