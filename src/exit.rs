//! Maps errors to one line on stderr and an exit code.

use std::process::ExitCode;

use foley_media::MediaError;

/// Exit code for a problem with the user's input (bad file, bad argument).
pub const USER_ERROR: u8 = 2;

/// Prints `error: <reason>` on one line and returns 2 for user-caused failures, 1 otherwise.
/// A closed standard output (`foley models list | head`) ends quietly with 0, as the reader asked for no more.
pub fn report(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.downcast_ref::<crate::out::StdoutError>().is_some_and(|s| s.is_broken_pipe())) {
        return ExitCode::SUCCESS;
    }
    // The chain, each cause once: sources whose text the previous message already holds are skipped.
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    eprintln!("error: {line}");
    ExitCode::from(if is_user_error(e) { USER_ERROR } else { 1 })
}

fn is_user_error(e: &anyhow::Error) -> bool {
    if let Some(p) = e.chain().find_map(|c| c.downcast_ref::<foley_pipeline::PipelineError>()) {
        return p.is_user_error();
    }
    e.chain().any(|c| match c.downcast_ref::<MediaError>() {
        Some(MediaError::Input(_) | MediaError::Invalid(_) | MediaError::Io { .. } | MediaError::Wav { .. }) => {
            true
        }
        Some(_) => false,
        None => c.downcast_ref::<foley_media::InputError>().is_some(),
    })
}
