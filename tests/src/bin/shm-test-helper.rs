//! The helper binary the multi-process tests start: one binary, many
//! subcommands (see `shm_tests::helper`).
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: shm-test-helper SUBCOMMAND [ARGS...]");
        std::process::exit(2);
    };
    match shm_tests::helper::dispatch(cmd, rest) {
        Some(code) => std::process::exit(code),
        None => {
            eprintln!("shm-test-helper: unknown subcommand {cmd:?}");
            std::process::exit(2);
        }
    }
}
