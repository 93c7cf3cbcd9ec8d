//! `hello`: the smallest program: greets from ring 3 with its pid.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{println, sys};

user::main!(main);

fn main(_args: &str) -> i32 {
    println!("Hello from ring 3! I am pid {}.", sys::getpid());
    0
}
