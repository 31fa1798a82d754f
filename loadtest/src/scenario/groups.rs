//! What one group of clients received between two collections: the tick clients (slow or
//! not), counted against what was published to their symbols, and the rate-tier clients,
//! counted by their frames and continuity alone.

use crate::client::{ClientPlan, ClientState, ClientStatus, Feed};
use crate::report::{Delivery, TierDelivery};

/// Deliveries of one group (slow or not) between two collections.
pub(super) fn group(
    before: &[ClientStatus],
    after: &[ClientStatus],
    plans: &[ClientPlan],
    welcomed: &[bool],
    delta: &[u64],
    slow: bool,
) -> Delivery {
    let mut d = Delivery::default();
    let counted = |p: &&ClientPlan| p.slow == slow && welcomed[p.id] && p.feed.counts_as_ticks();
    for plan in plans.iter().filter(counted) {
        let (b, a) = (&before[plan.id], &after[plan.id]);
        let (bc, ac) = (&b.counts, &a.counts);
        d.clients += 1;
        d.expected += plan.symbols.iter().map(|&s| delta[s as usize]).sum::<u64>();
        d.received += ac.ticks - bc.ticks;
        d.seq.add(&ac.seq.since(&bc.seq));
        d.relay_gaps += ac.relay_gaps - bc.relay_gaps;
        d.relay_gap_ticks += ac.relay_gap_ticks - bc.relay_gap_ticks;
        d.snapshots += ac.snapshots - bc.snapshots;
        d.error_msgs += ac.error_msgs - bc.error_msgs;
        d.decode_errors += ac.decode_errors - bc.decode_errors;
        d.unexpected_symbol += ac.unexpected_symbol - bc.unexpected_symbol;
        d.closed += u64::from(a.state == ClientState::Closed && b.state != ClientState::Closed);
        d.frames += ac.frames - bc.frames;
        d.messages += ac.messages - bc.messages;
        d.bytes += ac.bytes - bc.bytes;
        d.reads += ac.reads - bc.reads;
    }
    d.lost = d.expected.saturating_sub(d.received);
    d.extra = d.received.saturating_sub(d.expected);
    d
}

/// What the rate-tier clients received between two collections (they expect no set count:
/// a frame per interval per symbol when something changed).
pub(super) fn tier_group(
    before: &[ClientStatus],
    after: &[ClientStatus],
    plans: &[ClientPlan],
    welcomed: &[bool],
    delta: &[u64],
) -> TierDelivery {
    let mut d = TierDelivery::default();
    for plan in plans.iter().filter(|p| welcomed[p.id]) {
        let Feed::Tier(tier) = &plan.feed else {
            continue;
        };
        let (b, a) = (&before[plan.id], &after[plan.id]);
        let (bc, ac) = (&b.counts, &a.counts);
        d.tier.clone_from(tier);
        d.clients += 1;
        d.symbols += plan.symbols.len() as u64;
        d.ticks_published += plan.symbols.iter().map(|&s| delta[s as usize]).sum::<u64>();
        d.counts.add(&ac.tier.since(&bc.tier));
        d.error_msgs += ac.error_msgs - bc.error_msgs;
        d.decode_errors += ac.decode_errors - bc.decode_errors;
        d.unexpected_symbol += ac.unexpected_symbol - bc.unexpected_symbol;
        d.closed += u64::from(a.state == ClientState::Closed && b.state != ClientState::Closed);
        d.bytes += ac.bytes - bc.bytes;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientCounts, Encoding};

    fn plan(id: usize, feed: Feed) -> ClientPlan {
        ClientPlan {
            id,
            symbols: vec![0, 1],
            encoding: Encoding::Json,
            source: None,
            slow: false,
            recv_buffer: None,
            feed,
        }
    }

    fn status(id: usize, ticks: u64, frames: u64, breaks: u64) -> ClientStatus {
        let mut counts = ClientCounts {
            welcomed: true,
            ticks,
            ..ClientCounts::default()
        };
        counts.tier.frames = frames;
        counts.tier.breaks = breaks;
        ClientStatus {
            id,
            state: ClientState::Open,
            counts,
        }
    }

    #[test]
    fn tier_clients_are_counted_apart_from_the_ticks() {
        // Two raw clients got all 2 × 10 ticks of their symbols; the tier client got frames
        // and no ticks, which must not show as ticks lost.
        let plans = [
            plan(0, Feed::Ticks),
            plan(1, Feed::Ticks),
            plan(2, Feed::Tier("1s".into())),
        ];
        let before = [status(0, 0, 0, 0), status(1, 0, 0, 0), status(2, 0, 3, 1)];
        let after = [status(0, 20, 0, 0), status(1, 20, 0, 0), status(2, 0, 7, 2)];
        let welcomed = [true; 3];
        let raw = group(&before, &after, &plans, &welcomed, &[10, 10], false);
        assert_eq!((raw.clients, raw.expected, raw.lost), (2, 40, 0), "{raw:?}");
        let tier = tier_group(&before, &after, &plans, &welcomed, &[10, 10]);
        assert_eq!(
            (tier.clients, tier.symbols, tier.ticks_published),
            (1, 2, 20)
        );
        assert_eq!((tier.counts.frames, tier.counts.breaks), (4, 1));
        assert_eq!(tier.tier, "1s");
    }

    #[test]
    fn book_clients_are_counted_like_tick_clients() {
        let plans = [
            plan(0, Feed::Book { depth: Some(10) }),
            plan(1, Feed::Book { depth: None }),
        ];
        let before = [status(0, 0, 0, 0), status(1, 0, 0, 0)];
        let after = [status(0, 19, 0, 0), status(1, 20, 0, 0)];
        let d = group(&before, &after, &plans, &[true; 2], &[10, 10], false);
        assert_eq!((d.clients, d.expected, d.lost), (2, 40, 1));
        assert_eq!(
            tier_group(&before, &after, &plans, &[true; 2], &[10, 10]).clients,
            0
        );
    }
}
