#!/usr/bin/env bash
# npm run setup:native: builds @tensorflow/tfjs-node offline. Its own install script downloads libtensorflow, so
# instead it is installed without scripts and its binding is compiled against the TensorFlow C API shipped inside
# a TensorFlow 2.x CPU Python wheel on this disk (or the one TF_WHEEL names): tfjs-node 4.22 expects
# libtensorflow 2.9.1, and the part of the C API it uses is unchanged up to 2.21 at least.
# Idempotent: a second run with the same wheel only checks that the backend still loads.
# Exit status: 0 built (or already built), 3 no wheel found (nothing changed), 1 anything else.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=@tensorflow/tfjs-node
PACKAGE_DIR=node_modules/$PACKAGE
DEPS=$PACKAGE_DIR/deps
# Which wheel the libraries in deps/ came from; a different wheel (or a changed file) rebuilds.
STAMP=$DEPS/.wheel
# libtensorflow logs CPU features and oneDNN notices to stderr at load time.
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

fail() {
  echo "setup:native: $*" >&2
  exit "${FAILURE_STATUS:-1}"
}

test -d node_modules || fail "no node_modules: run npm ci (or npm install) first"

wheel=${TF_WHEEL:-}
if [ -n "$wheel" ]; then
  test -f "$wheel" || fail "TF_WHEEL=$wheel is not a file"
else
  # The newest TensorFlow CPU wheel anywhere on this file system (pip caches, wheel mirrors, downloads).
  wheel=$(find / -xdev \( -name node_modules -o -name .git \) -prune -o -name 'tensorflow_cpu-2.*-cp*-manylinux*_x86_64.whl' -type f -print 2>/dev/null | sort -V | tail -1)
  test -n "$wheel" || FAILURE_STATUS=3 fail "no TensorFlow CPU wheel (tensorflow_cpu-2.*-manylinux*_x86_64.whl) found on this disk; set TF_WHEEL to one"
fi
wheel=$(realpath "$wheel")
wheel_id="$wheel $(stat -c '%s %Y' "$wheel")"

# The version package.json asks for, resolved through the lockfile like every other dependency.
range=$(node -p "require('./package.json').optionalDependencies['$PACKAGE']")
installed=$(node -p "try { require('./$PACKAGE_DIR/package.json').version } catch { '' }")
if [ -z "$installed" ] || ! node -e "process.exit(require('semver').satisfies('$installed', '$range') ? 0 : 1)"; then
  echo "setup:native: installing $PACKAGE@$range without its install script"
  npm install --no-save --ignore-scripts --no-audit --no-fund --loglevel=error "$PACKAGE@$range"
  installed=$(node -p "require('./$PACKAGE_DIR/package.json').version")
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Loads tfjs-node in a fresh process, as the inference workers do, and checks that it runs a kernel. Prints the
# versions; what libtensorflow logs goes to verify.log, shown only when the check fails.
verify() {
  node --input-type=module 2>"$scratch/verify.log" -e "
    const tf = await import('$PACKAGE');
    await tf.ready();
    const sum = tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0];
    if (tf.getBackend() !== 'tensorflow' || sum !== 3) throw new Error('backend ' + tf.getBackend() + ', 1 + 2 = ' + sum);
    console.log('$PACKAGE ' + tf.version['tfjs-node'] + ', libtensorflow ' + tf.backend().binding.TF_Version);
  "
}

binding=$(node -p "require('@mapbox/node-pre-gyp').find(require.resolve('$PACKAGE/package.json'))" 2>/dev/null || true)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wheel_id" ] && [ -n "$binding" ] && [ -f "$binding" ]; then
  if version=$(verify); then
    echo "setup:native: already built ($version, from $wheel)"
    exit 0
  fi
  echo "setup:native: the existing build does not load, rebuilding: $(tail -1 "$scratch/verify.log")"
fi

started=$SECONDS
echo "setup:native: extracting the TensorFlow C library from $wheel"
rm -rf "$DEPS"
mkdir -p "$DEPS/lib"
unzip -q "$wheel" -d "$scratch" \
  'tensorflow/libtensorflow_cc.so.2' 'tensorflow/libtensorflow_framework.so.2' \
  'tensorflow/include/tensorflow/c/*' 'tensorflow/include/tensorflow/core/platform/ctstring*' \
  'tensorflow/include/tsl/platform/ctstring*' 'tensorflow/include/xla/tsl/c/tsl_status.h' ||
  fail "$wheel does not hold the TensorFlow C library and headers (unzip failed)"
mv "$scratch/tensorflow/include" "$DEPS/include"
# Debug symbols are a quarter of the size and unused.
strip --strip-unneeded "$scratch/tensorflow/libtensorflow_cc.so.2" "$scratch/tensorflow/libtensorflow_framework.so.2"
mv "$scratch/tensorflow/libtensorflow_cc.so.2" "$scratch/tensorflow/libtensorflow_framework.so.2" "$DEPS/lib/"
ln -s libtensorflow_cc.so.2 "$DEPS/lib/libtensorflow.so"                    # -ltensorflow at link time
ln -s libtensorflow_framework.so.2 "$DEPS/lib/libtensorflow_framework.so"   # -ltensorflow_framework
# tfjs-node's install script takes this file as "libtensorflow already downloaded" and only compiles the binding.
ln -s libtensorflow_cc.so.2 "$DEPS/lib/libtensorflow.so.2.9.1"

echo "setup:native: compiling the binding"
npm_config_build_from_source=true npm rebuild "$PACKAGE" --ignore-scripts=false --loglevel=error >"$scratch/build.log" 2>&1 ||
  { tail -20 "$scratch/build.log" >&2; fail "compiling the binding failed (log above)"; }

version=$(verify) || { cat "$scratch/verify.log" >&2; fail "the built backend does not load (error above)"; }
echo "$wheel_id" >"$STAMP"
echo "setup:native: built in $((SECONDS - started)) s, $(du -sh "$PACKAGE_DIR" | cut -f1) on disk: $version"
