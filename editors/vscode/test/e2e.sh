#!/usr/bin/env bash
# End-to-end test of the hushcode VS Code extension in a real VS Code: code-server 4.100.3 (VS Code 1.100.3)
# driven by Debian's Chromium through playwright-core. Installs the built .vsix, opens a copy of
# examples/ (or test/workspace/ while examples/ has no Python file), types, waits for ghost text, accepts
# it with Tab, then applies a "hushcode:" code action from the Ctrl+. menu. See shared/VSCODE-E2E.md.
#
# Environment:
#   HUSHCODE_SERVER_CMD        server command line (default: the stub, `<repo>/.venv/bin/python test/stub_server.py`),
#                              e.g. "/work/main/.venv/bin/hushcode serve" for the real server
#   HUSHCODE_E2E_CACHE         where code-server and playwright-core are installed (default ~/.cache/hushcode-e2e)
#   HUSHCODE_E2E_ARTIFACTS     screenshots and logs (default <repo>/test-artifacts/vscode)
#   HUSHCODE_E2E_FILE          file to open, relative to the workspace (default: the first *.py)
#   HUSHCODE_E2E_TYPE          text typed on a new last line (default "def add")
#   HUSHCODE_E2E_EXPECT        regex the accepted ghost text must match (default: anything for a real server,
#                              "return a \+ b" for the stub)
#   HUSHCODE_E2E_FUNCTION      function whose `def` line gets the code action (default: the file's first)
#   HUSHCODE_E2E_ACTION        prefix of the code action title to pick (default "hushcode:")
#   HUSHCODE_E2E_READY_TIMEOUT seconds to wait for the model to be ready (default 300)
#   HUSHCODE_E2E_VSIX          a prebuilt .vsix (default: `make -C editors/vscode package`)
# Prints "vscode e2e: PASS" or "vscode e2e: FAIL (...)" last; exits non-zero on failure.
set -euo pipefail
t_start=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EXT=$(cd "$HERE/.." && pwd)
REPO=$(cd "$EXT/../.." && pwd)
CACHE=${HUSHCODE_E2E_CACHE:-$HOME/.cache/hushcode-e2e}
ART=${HUSHCODE_E2E_ARTIFACTS:-$REPO/test-artifacts/vscode}
CS_VERSION=4.100.3
PW_VERSION=1.65.1
RG_CACHE_NAME=vscode-ripgrep-cache-1.15.11
RG_TARBALL=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz

fail() { echo "vscode e2e: FAIL ($*)"; exit 1; }
step() { echo "[e2e $(( $(date +%s) - t_start ))s] $*"; }

mkdir -p "$CACHE" "$ART"
ART=$(cd "$ART" && pwd)
rm -f "$ART"/*.png "$ART"/*.log "$ART"/*.jsonl "$ART"/*.html
rm -rf "$ART/logs"

# 1. System packages (Debian): Chromium, Kerberos headers for code-server's `kerberos` module, ripgrep.
need=()
for p in chromium libkrb5-dev ripgrep build-essential pkg-config python3 curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  step "apt-get install ${need[*]}"
  if [ "$(id -u)" != 0 ]; then fail "missing Debian packages ${need[*]} and not root to install them"; fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || fail "apt-get install ${need[*]}"
fi

# 2. code-server from npm, built against the system Node 20 headers. Three traps (VSCODE-E2E.md): its
#    postinstall refuses root without unsafe-perm; @vscode/ripgrep downloads rg (pre-seed its cache with
#    Debian's rg); node-pty's `npx node-gyp` needs npx's prompt answered. npm 11 also skips dependency
#    install scripts unless allowed, and code-server's postinstall is what installs VS Code's modules.
CS_BIN=$CACHE/cs/node_modules/.bin/code-server
if [ ! -x "$CS_BIN" ] || [ ! -e "$CACHE/cs/.installed-$CS_VERSION" ]; then
  step "installing code-server $CS_VERSION into $CACHE/cs"
  [ "$(node -p 'process.versions.node.split(".")[0]')" = 20 ] || fail "code-server $CS_VERSION needs Node 20, found $(node --version)"
  rm -rf "$CACHE/cs" "$CACHE/tmp"
  mkdir -p "$CACHE/cs" "$CACHE/tmp/$RG_CACHE_NAME" "$CACHE/tmp/rg"
  cp "$(command -v rg)" "$CACHE/tmp/rg/rg"
  tar czf "$CACHE/tmp/$RG_CACHE_NAME/$RG_TARBALL" -C "$CACHE/tmp/rg" rg
  (cd "$CACHE/cs" && npm init -y >/dev/null &&
    TMPDIR=$CACHE/tmp npm_config_nodedir=/usr npm_config_unsafe_perm=true npm_config_yes=true \
    npm_config_dangerously_allow_all_scripts=true \
    npm install --no-audit --no-fund --loglevel=error "code-server@$CS_VERSION" >"$CACHE/cs-install.log" 2>&1) ||
    { tail -30 "$CACHE/cs-install.log"; fail "code-server install (log: $CACHE/cs-install.log)"; }
  [ -e "$CACHE/cs/node_modules/code-server/lib/vscode/node_modules/node-pty/build/Release/pty.node" ] ||
    fail "code-server installed without its native modules (postinstall skipped?)"
  touch "$CACHE/cs/.installed-$CS_VERSION"
fi
if [ ! -e "$CACHE/tools/node_modules/playwright-core/package.json" ] ||
   [ "$(node -p "require('$CACHE/tools/node_modules/playwright-core/package.json').version")" != "$PW_VERSION" ]; then
  step "installing playwright-core $PW_VERSION into $CACHE/tools"
  mkdir -p "$CACHE/tools"
  (cd "$CACHE/tools" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --no-audit --no-fund --loglevel=error "playwright-core@$PW_VERSION" >/dev/null) || fail "playwright-core install"
fi

# 3. The extension under test.
VSIX=${HUSHCODE_E2E_VSIX:-}
if [ -z "$VSIX" ]; then
  step "building the extension (make -C editors/vscode package)"
  make -s -C "$EXT" package >"$ART/build.log" 2>&1 || { tail -30 "$ART/build.log"; fail "extension build"; }
  VSIX=$EXT/hushcode.vsix
fi
[ -f "$VSIX" ] || fail "no .vsix at $VSIX"

# 4. The server command: the real one from HUSHCODE_SERVER_CMD, else the stub.
if [ -n "${HUSHCODE_SERVER_CMD:-}" ]; then
  SERVER_KIND=real
  read -r -a SERVER_ARGV <<<"$HUSHCODE_SERVER_CMD"
  STUB_LOG=
else
  SERVER_KIND=stub
  PY=${HUSHCODE_STUB_PYTHON:-$REPO/.venv/bin/python}
  [ -x "$PY" ] || fail "no Python with pygls for the stub at $PY (set HUSHCODE_STUB_PYTHON or HUSHCODE_SERVER_CMD)"
  "$PY" -c 'import pygls.lsp.server' 2>/dev/null || fail "$PY has no pygls 2"
  SERVER_ARGV=("$PY" "$HERE/stub_server.py")
  STUB_LOG=$ART/stub-server.jsonl
  : >"$STUB_LOG"
fi
step "server ($SERVER_KIND): ${SERVER_ARGV[*]}"

# 5. Fresh profile and workspace; code-server on loopback only.
RUN=$CACHE/run
rm -rf "$RUN"
mkdir -p "$RUN/ud/User" "$RUN/exts" "$RUN/ws" "$RUN/xdg/config" "$RUN/xdg/data"
: >"$RUN/config.yaml"
if find "$REPO/examples" -name '*.py' -print -quit 2>/dev/null | grep -q .; then
  cp -r "$REPO/examples/." "$RUN/ws/"
else
  cp -r "$HERE/workspace/." "$RUN/ws/"
fi
# A workspace with hushcode.server.command cleared, and a `hushcode` on PATH that runs the server under test.
mkdir -p "$RUN/ws-path/.vscode" "$RUN/bin"
printf 'def main():\n    pass\n' >"$RUN/ws-path/app.py"
printf '{ "hushcode.server.command": [] }\n' >"$RUN/ws-path/.vscode/settings.json"
CLI_ARGV=("${SERVER_ARGV[@]}")
[ "${CLI_ARGV[-1]}" = serve ] && unset 'CLI_ARGV[-1]'
{ echo '#!/bin/sh'
  echo '# Stands in for an installed hushcode: `serve` runs the server under test, `model ...` its CLI.'
  if [ "$SERVER_KIND" = real ]; then
    printf 'if [ "$1" = model ]; then exec'; printf ' %q' "${CLI_ARGV[@]}"; echo ' "$@"; fi'
  else
    echo 'if [ "$1" = model ]; then echo "stub: hushcode $*: ok"; exit 0; fi'
  fi
  printf 'exec'; printf ' %q' "${SERVER_ARGV[@]}"; echo; } >"$RUN/bin/hushcode"
chmod +x "$RUN/bin/hushcode"
# A workspace whose server command does not exist, for the error path.
mkdir -p "$RUN/ws-missing/.vscode"
printf 'def main():\n    pass\n' >"$RUN/ws-missing/app.py"
printf '{ "hushcode.server.command": ["/nonexistent/hushcode", "serve"] }\n' >"$RUN/ws-missing/.vscode/settings.json"
# A workspace whose server exits at once with a message on stderr.
mkdir -p "$RUN/ws-crash/.vscode"
printf 'def main():\n    pass\n' >"$RUN/ws-crash/app.py"
python3 - "$RUN/ws-crash/.vscode/settings.json" "$(command -v python3)" <<'EOF'
import json, sys
code = "import sys; print('hushcode: error: no model here', file=sys.stderr); sys.exit(3)"
json.dump({"hushcode.server.command": [sys.argv[2], "-c", code]}, open(sys.argv[1], "w"))
EOF
python3 - "$RUN/ud/User/settings.json" "${SERVER_ARGV[@]}" <<'EOF'
import json, sys
settings = {
    "workbench.startupEditor": "none",
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "update.mode": "none",
    "workbench.enableExperiments": False,
    "workbench.tips.enabled": False,
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "chat.commandCenter.enabled": False,
    "editor.inlineSuggest.enabled": True,
    # The word-based suggest widget would compete with the ghost text for Tab.
    "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
    "editor.suggestOnTriggerCharacters": False,
    "editor.minimap.enabled": False,
    "files.autoSave": "off",
    "hushcode.server.command": sys.argv[2:],
    "hushcode.logLevel": "debug",
}
with open(sys.argv[1], "w") as f:
    json.dump(settings, f, indent=2)
EOF
PORT=${HUSHCODE_E2E_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
# code-server's own files go under $RUN, not ~; XDG_CACHE_HOME is left alone: the server keeps its model there.
export XDG_CONFIG_HOME=$RUN/xdg/config XDG_DATA_HOME=$RUN/xdg/data
# VSCODE_CLI=1: the extension host keeps this environment (PATH with $RUN/bin) instead of a login shell's.
export HUSHCODE_STUB_LOG=$STUB_LOG PATH=$RUN/bin:$PATH VSCODE_CLI=1
CS=("$CS_BIN" --config "$RUN/config.yaml" --user-data-dir "$RUN/ud" --extensions-dir "$RUN/exts")
step "installing $(basename "$VSIX")"
"${CS[@]}" --install-extension "$VSIX" >"$ART/install-extension.log" 2>&1 || { cat "$ART/install-extension.log"; fail "--install-extension"; }

CS_PID=
cleanup() {
  # setsid makes code-server a process-group leader: this ends it, its extension hosts and their servers.
  if [ -n "$CS_PID" ]; then
    kill -TERM -- "-$CS_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 -- "-$CS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$CS_PID" 2>/dev/null || true
  fi
  if [ -d "$RUN/ud/logs" ]; then cp -r "$RUN/ud/logs" "$ART/logs" 2>/dev/null || true; fi
  [ -f "$RUN/cs.log" ] && cp "$RUN/cs.log" "$ART/code-server.log" || true
}
trap cleanup EXIT
setsid "${CS[@]}" --bind-addr "127.0.0.1:$PORT" --auth none --disable-telemetry --disable-update-check \
  --disable-workspace-trust --disable-getting-started-override --ignore-last-opened >"$RUN/cs.log" 2>&1 &
CS_PID=$!
for _ in $(seq 1 240); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  kill -0 "$CS_PID" 2>/dev/null || { tail -20 "$RUN/cs.log"; fail "code-server exited"; }
  sleep 0.25
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" || fail "code-server did not answer on port $PORT"
step "code-server $CS_VERSION on 127.0.0.1:$PORT"

# 6. The browser test.
if [ -n "${HUSHCODE_E2E_EXPECT+x}" ]; then EXPECT=$HUSHCODE_E2E_EXPECT
elif [ "$SERVER_KIND" = stub ]; then EXPECT='return a \+ b'
else EXPECT=''; fi
rc=0
CS_URL="http://127.0.0.1:$PORT/?folder=$RUN/ws" MISSING_URL="http://127.0.0.1:$PORT/?folder=$RUN/ws-missing" PATH_URL="http://127.0.0.1:$PORT/?folder=$RUN/ws-path" CRASH_URL="http://127.0.0.1:$PORT/?folder=$RUN/ws-crash" WORKSPACE="$RUN/ws" ARTIFACTS="$ART" \
  CHROME_PROFILE="$RUN/chrome-profile" STUB_LOG="$STUB_LOG" \
  OPEN_FILE="${HUSHCODE_E2E_FILE:-}" FUNCTION="${HUSHCODE_E2E_FUNCTION:-}" TYPE_TEXT="${HUSHCODE_E2E_TYPE:-def add}" EXPECT="$EXPECT" \
  ACTION_PREFIX="${HUSHCODE_E2E_ACTION:-hushcode:}" READY_TIMEOUT="${HUSHCODE_E2E_READY_TIMEOUT:-300}" \
  NODE_PATH="$CACHE/tools/node_modules" \
  timeout 900 node "$HERE/e2e.js" || rc=$?
step "done"
if [ "$rc" = 0 ]; then
  echo "vscode e2e: PASS ($SERVER_KIND server, $(( $(date +%s) - t_start ))s, screenshots in $ART)"
else
  echo "vscode e2e: FAIL (exit $rc, $SERVER_KIND server; screenshots and logs in $ART)"
  exit 1
fi
