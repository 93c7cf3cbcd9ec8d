//! `cargo xtask save --out FILE`: boot the shell with the image `guest`, start a shell domain, type a few
//! commands in it, save it with `xl save` and stream the image over the serial line (`xl image-dump`, the
//! wire form of `abi::save::wire`), then decode the console output into FILE — checked line by line and
//! as a whole, and by the image codec itself. `cargo xtask run --restore FILE` boots it back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use abi::save::wire::{self, Assembler, WireLine};

use crate::images::{Profile, build_images};
use crate::scenario::{Scenario, run_scenario};
use crate::shell::{DOM0_CONSOLE_DIRECT, SHELL, Session, XL_IMAGE};

/// `cargo xtask save` arguments.
#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Where to write the image.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Memory of the saved domain, MiB.
    #[arg(long, default_value_t = 4)]
    pub mem: u32,
    /// Commands typed in the domain's shell before the save (its state afterwards), in order.
    #[arg(long = "command", value_name = "LINE", default_values_t = ["exitcode 42".to_string()])]
    pub commands: Vec<String>,
}

/// The image's name inside the hypervisor.
pub const NAME: &str = "host-file";

/// Decode the wire lines found in `output` into an image (checked by the wire form and by the codec).
pub fn decode_console(output: &str) -> Result<Vec<u8>, String> {
    let mut a = Assembler::new();
    let mut out = Vec::new();
    for line in output.lines() {
        let Some(w) = wire::parse(line).map_err(|e| format!("wire line refused: {e:?}: {line}"))?
        else {
            continue;
        };
        if let WireLine::Begin { len, .. } = w {
            if a.announced_len().is_some() {
                return Err("a second image on the console".into());
            }
            if len > 1 << 30 {
                return Err(format!("an image of {len} bytes announced"));
            }
            out = vec![0u8; len as usize];
        }
        a.feed(w, &mut out)
            .map_err(|e| format!("image stream refused: {e:?}"))?;
    }
    if !a.is_done() {
        return Err("no complete image on the console".into());
    }
    abi::save::decode(&out).map_err(|e| format!("the image itself is refused: {e:?}"))?;
    Ok(out)
}

/// A name the hypervisor takes for an image file (`restore=NAME`): the file stem, restricted.
pub fn image_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(abi::domctl::SAVED_NAME_MAX)
        .collect();
    if name.is_empty() {
        "restored".into()
    } else {
        name
    }
}

/// The scenario `cargo xtask save` runs: a `mem` MiB shell domain gets `commands` typed, is saved as
/// [`NAME`] and streamed over the serial line.
pub fn save_scenario(mem: u32, commands: &[String]) -> Scenario {
    let mut session = Session::new()
        .command(&format!("xl create -m {mem} guest shell"))
        .command("sleep 3")
        .command("xl console 1");
    // Each command is typed at the prompt that follows the previous command's echo: the domain's shell may
    // print a prompt of its own when it gets the console, and typing the next command (or the key that
    // takes the console back) at that one races the commands still queued for domain 1.
    let mut trigger = "has the console input now".to_string();
    for c in commands {
        session = session
            .when(&trigger, format!("{c}\n").as_bytes())
            .when(c, b"");
        trigger = "pvsh$ ".into();
    }
    let session = session
        .console_to_domain_0(&trigger)
        .command(&format!("xl save 1 {NAME}"))
        .command(&format!("xl image-dump {NAME}"))
        // Serial input typed while the hypervisor streams is lost: log out only after the dump.
        .when("written to the serial line", b"")
        .logout();
    let mut s = Scenario::new(&[SHELL]);
    s.hv_cmdline = format!("loglevel=info {DOM0_CONSOLE_DIRECT}");
    s.images = vec![XL_IMAGE.to_string()];
    s.timeout = Duration::from_secs(300);
    s.input = session.into_input(Some(Duration::from_secs(120)));
    s
}

/// `cargo xtask save`.
pub fn run(args: &SaveArgs) -> Result<u8, String> {
    let images = build_images(Profile::Release)?;
    let s = save_scenario(args.mem, &args.commands);
    eprintln!(
        "xtask: saving a {} MiB shell domain to {}",
        args.mem,
        args.out.display()
    );
    let o = run_scenario(&images, &s)?;
    eprintln!(
        "xtask: the run ended after {:.1} s: {:?}{}",
        o.elapsed.as_secs_f64(),
        o.exit,
        o.script
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    let image = decode_console(&o.output)
        .map_err(|e| format!("{e}\n--- console (last lines) ---\n{}", tail(&o.output, 30)))?;
    std::fs::write(&args.out, &image)
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    let lines = o
        .output
        .lines()
        .filter(|l| l.contains(wire::PREFIX))
        .count();
    for l in o.output.lines().filter(|l| {
        l.contains(&format!("saved as '{NAME}'")) || l.contains("written to the console")
    }) {
        eprintln!("xtask: {l}");
    }
    eprintln!(
        "xtask: wrote {} ({} bytes, checked), streamed in {lines} lines; boot it with `cargo xtask run --restore {}`",
        args.out.display(),
        image.len(),
        args.out.display()
    );
    Ok(0)
}

fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_output_decodes_to_the_image() {
        let mut buf = vec![0u8; 64 * 1024];
        let mut e = abi::save::Encoder::new(&mut buf).unwrap();
        e.record(
            abi::save::RecordKind::Domain,
            &[&[0u8; abi::save::DOMAIN_LEN]],
        )
        .unwrap();
        e.record(
            abi::save::RecordKind::Vcpu,
            &[&vec![7u8; abi::save::VCPU_LEN]],
        )
        .unwrap();
        let len = e.finish().unwrap();
        let img = &buf[..len];
        let mut text = String::from("[hv] INFO  booting\n(d0) pvsh$ xl image-dump x\n");
        wire::encode("x", img, |l| {
            text.push_str(l);
            text.push('\n');
        });
        assert_eq!(decode_console(&text).unwrap(), img);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(4);
        let cut = lines.join("\n");
        assert!(decode_console(&cut).is_err(), "a lost line");
        assert!(decode_console("nothing here").is_err());
    }

    #[test]
    fn file_names_become_image_names() {
        assert_eq!(image_name(Path::new("/tmp/my shell.img")), "myshell");
        assert_eq!(
            image_name(Path::new("/tmp/a-very-long-name-indeed.img")),
            "a-very-long-name"
        );
        assert_eq!(image_name(Path::new("/tmp/...")), "..");
        assert_eq!(image_name(Path::new("/")), "restored");
    }
}
