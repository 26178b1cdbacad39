// A hub-local Queue cannot be captured by work spawned on a multi-hub runtime.
use greenhub::runtime::Runtime;
use greenhub::sync::Queue;

fn main() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let q = Queue::<u32>::new();
    rt.spawn(move || q.try_put(1));
}
