#!/usr/bin/env bash
# Sourced by .ci/run and scripts/test.sh before the first cargo command.
#
# rust-toolchain.toml pins the Rust the compile-fail snapshots were written with. rustup installs
# a pinned toolchain it lacks from the Rust distribution server; on a machine that cannot reach it
# but whose `stable` *is* that version (one toolchain, installed as `stable`), make the pinned
# name point at `stable`'s directory instead, as this project's machines come set up, so nothing
# needs downloading. (`rustup toolchain link` refuses names that look like releases, hence the
# symbolic link.) Any other case is left to rustup.
pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
if [ -n "$pinned" ] && command -v rustup >/dev/null 2>&1 &&
  ! rustup toolchain list | grep -q "^$pinned"; then
  stable_sysroot=$(rustup run stable rustc --print sysroot 2>/dev/null || true)
  stable_version=$(rustup run stable rustc --version 2>/dev/null | awk '{print $2}')
  host=$(rustup run stable rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  if [ -n "$stable_sysroot" ] && [ "$stable_version" = "$pinned" ] && [ -n "$host" ]; then
    echo "toolchain: the installed stable is $pinned (rust-toolchain.toml): naming it so" >&2
    ln -s "$stable_sysroot" "$(dirname "$stable_sysroot")/$pinned-$host"
  fi
fi
