//! The `tollway-cni` executable: install it in the runtime's CNI bin
//! directory (`/opt/cni/bin`) and name it in a network configuration's
//! `type`. The `tollway` binary also runs the plugin as `tollway cni` or
//! when invoked under the name `tollway-cni`.

fn main() -> std::process::ExitCode {
    tollway_cni::main()
}
