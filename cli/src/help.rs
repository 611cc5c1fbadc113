//! Checks of a command line's help, for the binaries' own tests.

/// Every flag and positional of `command` and its subcommands that a user
/// can see (not hidden, not `--help` or `--version`) but that has no help
/// line, as `PATH ARG` (e.g. `edgeroute publish keep`).
pub fn undocumented(command: &clap::Command) -> Vec<String> {
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !arg.is_hide_set() && !builtin && arg.get_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(command, command.get_name(), &mut missing);
    missing
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_without_help_are_found_and_hidden_ones_are_not() {
        let command = clap::Command::new("tool")
            .arg(clap::Arg::new("documented").long("documented").help("Says what it is."))
            .arg(clap::Arg::new("hidden").long("hidden").hide(true))
            .subcommand(clap::Command::new("sub").arg(clap::Arg::new("bare").long("bare")));
        assert_eq!(super::undocumented(&command), ["tool sub bare"]);
    }
}
