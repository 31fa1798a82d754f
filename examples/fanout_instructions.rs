//! The fan-out bench's hot loop (`benches/fanout.rs`: one tick to 10,000 in-memory sessions,
//! its JSON and protobuf frames built once, gzip per client) run a fixed number of times, for
//! an instruction count under callgrind: exact and repeatable on a box whose other core is
//! busy, where criterion's timings swing by ±30 %. Compare two trees by the difference of
//! two runs (N iterations less 0 iterations removes the setup):
//!
//! ```sh
//! cargo build --profile bench --example fanout_instructions
//! for n in 0 100; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/fanout_instructions mixed $n 2>&1 | grep Collected; done
//! ```

use tickrelay::encode::Encoding;

#[path = "../benches/support/fanout.rs"]
mod setup;

use setup::{fan_out, shard};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("json|mixed");
    let iters: u64 = args.next().expect("iterations").parse().expect("a number");
    let encodings: Vec<Encoding> = if which == "json" {
        vec![Encoding::Json]
    } else {
        [Encoding::Json; 7]
            .iter()
            .chain(&[Encoding::Protobuf; 2])
            .chain(&[Encoding::Gzip])
            .copied()
            .collect()
    };
    let mut s = shard(&encodings);
    let t = fan_out(&mut s, iters);
    eprintln!("{which} {iters}: {t:?}");
}
