//! Component instantiation time alone (the fixed cost of every wasm container start,
//! before the guest runs), for the `ticker` test guest:
//!
//! - `runtime`: what `WasmRuntime::start` does: `Store::new` + `InstancePre::
//!   instantiate_async` on the node's engine (pooling allocator, CoW memory images);
//! - `pre, on-demand`: the same `InstancePre` path on an engine with wasmtime's default
//!   on-demand allocator, to separate what pre-linking and pooling each contribute;
//! - `naive` (the anchor): `Store::new` + `Linker::instantiate_async` of the `Component`
//!   on the on-demand engine: what an embedding without either does.
//!
//! The paths run interleaved in rounds so that load from others on the machine hits them
//! alike. Usage: `cargo bench -p node --bench instantiate [-- ITERATIONS]` (default 5000
//! per path).

use std::time::{Duration, Instant};

use node::images::ImageStore;
use node::runtime::wasm::WasmRuntime;
use node::testing::Guest;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const ROUND: usize = 100;
const WARMUP_ROUNDS: usize = 2;

struct State {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn new_store(engine: &Engine) -> Store<State> {
    Store::new(
        engine,
        State {
            ctx: WasiCtx::builder().arg("bench").build(),
            table: ResourceTable::new(),
        },
    )
}

/// The anchor engine: wasmtime's defaults (on-demand allocator) with the component model.
struct OnDemand {
    engine: Engine,
    linker: Linker<State>,
    component: Component,
    pre: InstancePre<State>,
}

impl OnDemand {
    fn new(wasm: &[u8]) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        let component = Component::new(&engine, wasm)?;
        let pre = linker.instantiate_pre(&component)?;
        Ok(OnDemand {
            engine,
            linker,
            component,
            pre,
        })
    }

    async fn naive(&self) -> Duration {
        let t = Instant::now();
        let mut store = new_store(&self.engine);
        let instance = self
            .linker
            .instantiate_async(&mut store, &self.component)
            .await;
        let took = t.elapsed();
        instance.expect("naive instantiation");
        took
    }

    async fn pre(&self) -> Duration {
        let t = Instant::now();
        let mut store = new_store(&self.engine);
        let instance = self.pre.instantiate_async(&mut store).await;
        let took = t.elapsed();
        instance.expect("pre instantiation");
        took
    }
}

struct Summary {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

fn summarize(mut v: Vec<Duration>) -> Summary {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Summary {
        median: at(0.5),
        p99: at(0.99),
        mean: v.iter().sum::<Duration>() / v.len() as u32,
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; the one number, if any, is the iteration count.
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let rounds = iterations.div_ceil(ROUND).max(1);

    let dir = tempfile::tempdir().expect("tempdir");
    let images = ImageStore::open(&dir.path().join("images")).expect("image store");
    let wasm = Guest::Ticker.bytes();
    images.import_wasm(&wasm, "ticker:bench").expect("import");
    let image = images
        .resolve("ticker:bench")
        .expect("resolve")
        .expect("image");
    let runtime = WasmRuntime::new(&dir.path().join("cache")).expect("runtime");
    let on_demand = OnDemand::new(&wasm).expect("on-demand engine");

    let mut runtime_times = Vec::new();
    let mut pre_times = Vec::new();
    let mut naive_times = Vec::new();
    for round in 0..WARMUP_ROUNDS + rounds {
        let measured = round >= WARMUP_ROUNDS;
        let times = runtime
            .measure_instantiation(&image, ROUND)
            .await
            .expect("runtime instantiation");
        let mut pre = Vec::with_capacity(ROUND);
        let mut naive = Vec::with_capacity(ROUND);
        for _ in 0..ROUND {
            pre.push(on_demand.pre().await);
            naive.push(on_demand.naive().await);
        }
        if measured {
            runtime_times.extend(times.with_store);
            pre_times.extend(pre);
            naive_times.extend(naive);
        }
    }

    let n = runtime_times.len();
    let runtime = summarize(runtime_times);
    let pre = summarize(pre_times);
    let naive = summarize(naive_times);
    println!(
        "instantiation of `ticker`, {n} iterations per path (after {} warm-up)",
        WARMUP_ROUNDS * ROUND
    );
    println!("| path | median | p99 | mean | naive median / median |");
    println!("|---|---|---|---|---|");
    for (name, s) in [
        ("runtime: InstancePre + pooling", &runtime),
        ("InstancePre + on-demand", &pre),
        ("naive: Linker::instantiate + on-demand (anchor)", &naive),
    ] {
        println!(
            "| {name} | {} | {} | {} | {:.1}x |",
            micros(s.median),
            micros(s.p99),
            micros(s.mean),
            naive.median.as_secs_f64() / s.median.as_secs_f64()
        );
    }
    let goal = Duration::from_micros(50);
    println!(
        "goal: runtime median under {} -> {}",
        micros(goal),
        if runtime.median < goal {
            "met"
        } else {
            "NOT met"
        }
    );
}
