//! Who the clients are: balanced symbols, the encoding mix and the slow flags, repeatable
//! from `--seed`.

use std::net::Ipv4Addr;

use super::args::{Mix, SlowArgs};
use crate::client::{ClientPlan, Encoding, Feed};

/// The clients of a run: balanced symbols, the encoding mix and slow flags shuffled over them.
pub fn plan_clients(
    n: usize,
    symbols: u32,
    per_client: u32,
    mix: &Mix,
    slow: &SlowArgs,
    source_ips: u8,
    seed: u64,
) -> Vec<ClientPlan> {
    let mut rng = SplitMix(seed);
    // Exact counts per encoding (largest remainder), then shuffled so encodings do not line up
    // with the symbol rotation.
    let total: u64 = mix.0.iter().map(|p| u64::from(p.1)).sum();
    let mut encodings: Vec<Encoding> = Vec::with_capacity(n);
    let mut quotas: Vec<(Encoding, usize, u64)> = mix
        .0
        .iter()
        .map(|&(e, w)| {
            let exact = n as u64 * u64::from(w);
            (e, (exact / total) as usize, exact % total)
        })
        .collect();
    let mut short = n - quotas.iter().map(|q| q.1).sum::<usize>();
    quotas.sort_by_key(|q| std::cmp::Reverse(q.2));
    for q in &mut quotas {
        if short > 0 && q.2 > 0 {
            q.1 += 1;
            short -= 1;
        }
    }
    for (e, count, _) in &quotas {
        encodings.extend(std::iter::repeat_n(*e, *count));
    }
    rng.shuffle(&mut encodings);
    let slow_count = ((n as f64) * slow.slow_fraction.clamp(0.0, 1.0)).round() as usize;
    let mut is_slow: Vec<bool> = (0..n).map(|i| i < slow_count).collect();
    rng.shuffle(&mut is_slow);
    let per_client = per_client.min(symbols);
    (0..n)
        .map(|i| ClientPlan {
            id: i,
            symbols: (0..per_client)
                .map(|j| {
                    ((i as u64 * u64::from(per_client) + u64::from(j)) % u64::from(symbols)) as u32
                })
                .collect(),
            encoding: encodings[i],
            source: (source_ips > 1)
                .then(|| Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(source_ips)) as u8)),
            slow: is_slow[i],
            recv_buffer: is_slow[i].then_some(slow.slow_rcvbuf),
            feed: Feed::Ticks,
        })
        .collect()
}

/// A small deterministic PRNG (SplitMix64) for shuffles that repeat with the same `--seed`.
pub(super) struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_balanced_and_exact() {
        let mix: Mix = "json=70,protobuf=20,gzip=10".parse().unwrap();
        let slow = SlowArgs {
            slow_fraction: 0.1,
            slow_rcvbuf: 4096,
        };
        let plans = plan_clients(1000, 100, 10, &mix, &slow, 4, 7);
        assert_eq!(
            plans.iter().filter(|p| p.recv_buffer == Some(4096)).count(),
            100
        );
        let mut per_symbol = vec![0; 100];
        for p in &plans {
            let mut s = p.symbols.clone();
            s.dedup();
            assert_eq!(s.len(), 10);
            for &sym in &p.symbols {
                per_symbol[sym as usize] += 1;
            }
        }
        assert!(per_symbol.iter().all(|&n| n == 100));
        let count = |e| plans.iter().filter(|p| p.encoding == e).count();
        assert_eq!(
            (
                count(Encoding::Json),
                count(Encoding::Protobuf),
                count(Encoding::Gzip)
            ),
            (700, 200, 100)
        );
        assert_eq!(plans.iter().filter(|p| p.slow).count(), 100);
        assert_eq!(plans[0].source, Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(plans[5].source, Some(Ipv4Addr::new(127, 0, 0, 3)));
        // Encodings do not line up with the symbol rotation.
        let first_block: Vec<Encoding> = plans
            .iter()
            .filter(|p| p.symbols[0] == 0)
            .map(|p| p.encoding)
            .collect();
        assert!(first_block.contains(&Encoding::Json) && first_block.len() == 100);
        assert!(first_block.iter().any(|&e| e != Encoding::Json));
    }

    #[test]
    fn odd_mixes_still_sum_to_n() {
        let mix: Mix = "json=1,protobuf=1,gzip=1".parse().unwrap();
        for n in [1, 2, 5, 7, 100] {
            let none = SlowArgs {
                slow_fraction: 0.0,
                slow_rcvbuf: 0,
            };
            assert_eq!(plan_clients(n, 10, 3, &mix, &none, 1, 1).len(), n);
        }
    }
}
