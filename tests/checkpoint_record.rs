//! Issues 11.6 and 13.2: a checkpoint records the network settings its weights were trained
//! with (classifier, input coding, surrogate γ, each spiking layer's neuron kind, leak and
//! reset), and `--resume` and `snnc eval` refuse a network file that says otherwise
//! (`snnc::train::checkpoint_mismatch`, exit 1, naming the setting); a checkpoint written
//! before the record existed loads with a coded warning. Conversion's simulation memory is
//! checked before it runs (issue 11.4).
//!
//! Owner: the checkpoint/driver work. Runs are tiny (embedded data, 32 images, T = 2).

use std::path::Path;
use std::process::{Command, Output};

use snnc::train::checkpoint;

type R = Result<(), Box<dyn std::error::Error>>;

const NET: &str = "network Tiny {
    input 1x28x28
    timesteps 2
    encode direct
    neuron LIF(leak = 0.9, threshold = 1.0)
    Pool(4x4/4)
    FC1(49,16) LIF
    FC2(16,10)
}
";

fn snnc(args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
    Ok(Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .output()?)
}

/// Trains `src` for one epoch into `dir/run`; returns the network file and the output folder.
fn train(dir: &Path, src: &str) -> Result<(String, String), Box<dyn std::error::Error>> {
    let file = dir.join("net.snn");
    std::fs::write(&file, src)?;
    let (file, out) = (
        file.to_str().ok_or("path")?.to_string(),
        dir.join("run").to_str().ok_or("path")?.to_string(),
    );
    let o = snnc(&[
        "train",
        &file,
        "--out",
        &out,
        "--data",
        "embedded",
        "--train-limit",
        "32",
        "--test-limit",
        "32",
        "--epochs",
        "1",
    ])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Ok((file, out))
}

fn eval(file: &str, out: &str) -> Result<Output, Box<dyn std::error::Error>> {
    let w = format!("{out}/weights.safetensors");
    snnc(&[
        "eval",
        file,
        "--weights",
        &w,
        "--data",
        "embedded",
        "--test-limit",
        "32",
    ])
}

/// stderr with the temporary folder replaced by `DIR`.
fn stderr(o: &Output, dir: &Path) -> String {
    String::from_utf8_lossy(&o.stderr).replace(dir.to_str().unwrap_or("\u{0}"), "DIR")
}

#[test]
fn checkpoint_records_the_network_settings() -> R {
    let dir = tempfile::tempdir()?;
    let (_, out) = train(dir.path(), NET)?;
    let (_, meta) = checkpoint::load(&checkpoint::weights_path(Path::new(&out)))?;
    let rec = meta.net.ok_or("no network record")?;
    assert_eq!(rec.classifier, "softmax");
    assert_eq!(rec.encode, "direct");
    // The language's default surrogate steepness (`ir::Settings::default`).
    assert_eq!(rec.surrogate_gamma, 0.3);
    assert_eq!(rec.neurons.len(), 1);
    let n = &rec.neurons[0];
    assert_eq!(
        (
            n.layer.as_str(),
            n.step,
            n.kind.as_str(),
            n.leak,
            n.reset.as_str()
        ),
        ("FC1", 1, "LIF", 0.9, "subtract")
    );
    assert_eq!(meta.position, None);
    Ok(())
}

#[test]
fn eval_refuses_another_leak() -> R {
    let dir = tempfile::tempdir()?;
    let (file, out) = train(dir.path(), NET)?;
    std::fs::write(&file, NET.replace("leak = 0.9", "leak = 0.8"))?;
    let o = eval(&file, &out)?;
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&o, dir.path()));
    Ok(())
}

#[test]
fn resume_refuses_another_classifier_and_reset() -> R {
    let dir = tempfile::tempdir()?;
    let (file, out) = train(dir.path(), NET)?;
    let resume = |src: &str| -> Result<Output, Box<dyn std::error::Error>> {
        std::fs::write(&file, src)?;
        snnc(&[
            "train", &file, "--out", &out, "--data", "embedded", "--epochs", "2", "--resume",
        ])
    };
    let o = resume(&NET.replace("FC2(16,10)", "FC2(16,10)\n    stochmax"))?;
    assert_eq!(o.status.code(), Some(1));
    let classifier = stderr(&o, dir.path());
    let o = resume(&NET.replace("threshold = 1.0", "threshold = 1.0, reset = zero"))?;
    assert_eq!(o.status.code(), Some(1));
    let reset = stderr(&o, dir.path());
    let o = resume(&NET.replace(
        "encode direct",
        "encode direct\n    surrogate linear(gamma = 0.5)",
    ))?;
    assert_eq!(o.status.code(), Some(1));
    let surrogate = stderr(&o, dir.path());
    insta::assert_snapshot!(format!("{classifier}\n{reset}\n{surrogate}"));
    // The unchanged file resumes.
    let o = resume(NET)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Ok(())
}

#[test]
fn a_checkpoint_without_the_record_loads_with_a_warning() -> R {
    let dir = tempfile::tempdir()?;
    let (file, out) = train(dir.path(), NET)?;
    let path = checkpoint::weights_path(Path::new(&out));
    let (mut map, _) = checkpoint::load(&path)?;
    let old: Vec<String> = [
        "meta.classifier",
        "meta.encode",
        "meta.surrogate_gamma",
        "meta.neurons",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    for k in &old {
        assert!(map.remove(k).is_some(), "{k}");
    }
    candle_core::safetensors::save(&map, &path)?;
    let (_, meta) = checkpoint::load(&path)?;
    assert_eq!(meta.net, None);
    assert_eq!(meta.epoch, 1);
    // The leak differs, but nothing records it: a warning, and the evaluation runs.
    std::fs::write(&file, NET.replace("leak = 0.9", "leak = 0.8"))?;
    let o = eval(&file, &out)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = stderr(&o, dir.path());
    assert!(
        err.contains("warning[snnc::train::checkpoint_unrecorded]: DIR/run/weights.safetensors does not record"),
        "{err}"
    );
    Ok(())
}

/// Conversion's simulator memory (issue 11.4): the estimate, by hand, and its refusal.
#[test]
fn conversion_simulation_memory_is_checked() -> R {
    let net = snnc::compile(
        "network C {\n input 1x28x28\n encode direct\n method conversion\n \
         Conv1(1,4,3x3/1) LIF\n AvgPool(2x2/2)\n FC1(784,10)\n}",
    )?
    .networks
    .remove(0);
    // Nodes (`snnc show`): Input 1·28·28 = 784, Encode 784, Conv1 4·28·28 = 3136, AvgPool1
    // 4·14·14 = 784, FC1 10 features: (784 + 784 + 3136 + 784 + 10)·4 bytes·3 per image.
    let per_image = snnc::train::memory::simulation_bytes(&net, 1);
    assert_eq!(per_image, (784 + 784 + 3136 + 784 + 10) * 4 * 3);
    assert_eq!(
        snnc::train::memory::simulation_bytes(&net, 10),
        10 * per_image
    );
    assert!(snnc::train::memory::check_simulation_against(&net, 10, Some(10 * per_image)).is_ok());
    let e = snnc::train::memory::check_simulation_against(&net, 1 << 40, Some(1 << 30))
        .expect_err("a batch of 2^40 images does not fit in 1 GiB");
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string()
            .starts_with("a conversion simulation step would need about"),
        "{e}"
    );
    Ok(())
}
