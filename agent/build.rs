//! Compiles the kernel programs under `ebpf/` with clang (`-target bpf`, CO-RE)
//! and strips their DWARF (BTF stays), for `aya::include_bytes_aligned!`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ebpf = manifest.join("../ebpf");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("vigil.bpf.o");
    for file in ["vigil.bpf.c", "vigil.h", "vmlinux.h"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "arm64",
        Ok("x86_64") | Err(_) => "x86",
        Ok(other) => panic!("vigil-agent: no eBPF target arch for {other}"),
    };
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(&ebpf)
        .arg("-c")
        .arg(ebpf.join("vigil.bpf.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("vigil-agent: cannot run {clang} (apt-get install clang libbpf-dev): {e}")
        });
    assert!(
        status.success(),
        "vigil-agent: clang failed on ebpf/vigil.bpf.c"
    );
    let strip = env::var("LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".to_owned());
    match Command::new(&strip).arg("-g").arg(&out).status() {
        Ok(status) if status.success() => {}
        // An unstripped object loads the same; it is only larger.
        other => println!(
            "cargo:warning=llvm-strip -g failed ({other:?}); embedding the unstripped object"
        ),
    }
}
