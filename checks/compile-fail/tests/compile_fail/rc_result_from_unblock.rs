// Nor can a pool job hand an Rc back.
use std::rc::Rc;

use greenhub::threadpool;

fn main() {
    let _r: Rc<u8> = threadpool::unblock(|| Rc::new(1));
}
