#!/usr/bin/env bash
# astertrack installer.  Safe to run again: a second run changes nothing.
#
#   ./install.sh                      install on this Asterisk box (root): user, /opt/astertrack venv,
#                                     /etc/astertrack config + secrets, SQLite database, systemd units,
#                                     Asterisk drop-ins, AMI login check
#   ./install.sh --postgres URL       same, with PostgreSQL (postgresql://user:pass@host/db)
#   ./install.sh --dev [--demo]       development checkout: .venv, ./var config and SQLite;
#                                     --demo loads sample data and runs everything in the foreground
#   ./install.sh --uninstall [--purge]  remove services and files; data, config and recordings are kept
#                                     unless --purge (recordings in Asterisk's monitor dir are never deleted)
#
# Options: --root DIR (write every path under DIR; system commands come from PATH; for packaging
# and tests), --no-venv (skip the virtualenv/pip step; env ASTERTRACK_INSTALL_NO_VENV=1),
# --asterisk-etc DIR (default /etc/asterisk), --no-asterisk, --no-start, --skip-ami-check,
# --node NAME (this PBX's name when several share one database; default: short host name),
# --no-run (with --dev --demo: load the demo but do not start).
set -euo pipefail
umask 022

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELPER="$SRC/deploy/install_helper.py"
MODE=install
ROOT=""
PURGE=0
PG_URL=""
NO_VENV="${ASTERTRACK_INSTALL_NO_VENV:-0}"
DEMO=0
NO_RUN=0
NO_START=0
NO_ASTERISK=0
SKIP_AMI_CHECK=0
AST_ETC=/etc/asterisk
NODE=""

usage() { sed -n "2,/^set -euo/p" "$0" | sed -e "/^set -euo/d" -e "s/^# \{0,1\}//"; }
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift ;;
    --root=*) ROOT="${1#*=}" ;;
    --postgres) PG_URL="${2:?--postgres needs a URL}"; shift ;;
    --postgres=*) PG_URL="${1#*=}" ;;
    --dev) MODE=dev ;;
    --demo) DEMO=1 ;;
    --no-run) NO_RUN=1 ;;
    --uninstall) MODE=uninstall ;;
    --purge) PURGE=1 ;;
    --no-venv) NO_VENV=1 ;;
    --no-start) NO_START=1 ;;
    --no-asterisk) NO_ASTERISK=1 ;;
    --skip-ami-check) SKIP_AMI_CHECK=1 ;;
    --asterisk-etc) AST_ETC="${2:?}"; shift ;;
    --node) NODE="${2:?}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
[ "$PURGE" = 1 ] && [ "$MODE" != uninstall ] && die "--purge goes with --uninstall"
[ "$DEMO" = 1 ] && [ "$MODE" != dev ] && die "--demo goes with --dev"
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" = / ] && ROOT=""
fi

# Fixed locations on the target system; r() places them under --root.
PREFIX=/opt/astertrack
ETC=/etc/astertrack
DATA=/var/lib/astertrack
LOGDIR=/var/log/astertrack
UNITDIR=/etc/systemd/system
SVC_USER=astertrack
UNITS="astertrack-agi.service astertrack-ami.service astertrack-web.service astertrack-tracker.service astertrack-webhooks.service astertrack-retention.service astertrack-retention.timer astertrack-conversions.service astertrack-conversions.timer astertrack-transcription.service astertrack-transcription.timer astertrack.target"
ENABLE="astertrack.target astertrack-agi.service astertrack-ami.service astertrack-web.service astertrack-tracker.service astertrack-webhooks.service astertrack-retention.timer astertrack-conversions.timer"
DEFAULT_CHANNELVARS="CT_CALL_ID,CT_SOURCE,CT_MANAGER,CT_RECORDING"
r() { printf '%s%s' "$ROOT" "$1"; }
say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
ACTIONS=()
need_action() { ACTIONS+=("$*"); }

# A system-changing command, taken from PATH (tests record them with stand-ins).
sys() { printf '  + %s\n' "$*"; "$@"; }
have() { command -v "$1" >/dev/null 2>&1; }
helper() { "$PYTHON" "$HELPER" "$@"; }

find_python() {
  local candidate
  for candidate in python3 python3.13 python3.12 python3.11; do
    if have "$candidate" && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$(command -v "$candidate")"; return 0
    fi
  done
  die "Python 3.11 or newer is required (Debian 12: apt-get install python3; Ubuntu 22.04: apt-get install python3.11)"
}

ensure_venv_module() {
  if "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then return 0; fi
  local minor; minor="$("$PYTHON" -c 'import sys; print(sys.version_info[1])')"
  say "python venv support is missing; installing python3-venv with apt-get"
  local apt=(apt-get); [ "$(id -u)" = 0 ] || { have sudo && apt=(sudo apt-get); }
  [ "$(id -u)" = 0 ] || have sudo || die "python3 -m venv does not work; as root run: apt-get install python3-venv"
  sys "${apt[@]}" update -qq || true
  sys "${apt[@]}" install -y -qq python3-venv || true
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || sys "${apt[@]}" install -y -qq "python3.$minor-venv" || true
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "python3 -m venv still does not work: install python3.$minor-venv and run again"
}

# pip's output (build warnings included) goes to a log; shown only when pip fails.
quiet_pip() {
  local venv="$1" log="$2"; shift 2
  say "  pip install $* (log: $log)"
  if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install "$@"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "pip install failed (full log: $log)"
  fi
}

gen_secret() { "$PYTHON" -c "import secrets; print(secrets.token_urlsafe($1))"; }

# ---------------------------------------------------------------- development checkout

dev_setup() {
  find_python
  ensure_venv_module
  local venv="$SRC/.venv" var="$SRC/var" conf="$SRC/var/astertrack.conf"
  step "virtualenv $venv"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  local marker="$venv/.astertrack-dev-installed"
  if [ ! -f "$marker" ] || [ "$SRC/setup.cfg" -nt "$marker" ] || [ ! -x "$venv/bin/astertrack" ]; then
    mkdir -p "$SRC/var"
    quiet_pip "$venv" "$SRC/var/install-pip.log" -e "$SRC[test,postgres]"
    touch "$marker"
  else
    say "  packages up to date (delete $marker to force a reinstall)"
  fi
  step "configuration $conf"
  mkdir -p "$var/recordings" "$var/conf.d"
  if [ -f "$conf" ]; then
    say "  exists: kept as it is"
  else
    cat > "$conf" <<EOF
# astertrack development configuration (written once by ./install.sh --dev; edits are kept).
[general]
node = dev
data_dir = $var
log_level = INFO

[web]
secure_cookies = no

[recordings]
dir = $var/recordings
EOF
    say "  written"
  fi
  if [ ! -f "$var/conf.d/10-secrets.conf" ]; then
    ( umask 027; cat > "$var/conf.d/10-secrets.conf" <<EOF
[database]
url = sqlite:///$var/astertrack.db

[web]
secret_key = $(gen_secret 48)

[ami]
secret = $(gen_secret 24)
EOF
    )
  fi
  export ASTERTRACK_CONFIG="$conf"
  step "database"
  "$venv/bin/astertrack" db upgrade
  if [ "$DEMO" = 1 ]; then
    step "demo data"
    "$venv/bin/astertrack" demo
  fi
  local web_host web_port
  web_host="$(helper get "$conf" web listen_host --default 127.0.0.1)"
  web_port="$(helper get "$conf" web listen_port --default 8080)"
  say ""
  say "Development setup ready.  Config: $conf (ASTERTRACK_CONFIG)"
  say "Tests: ./scripts/test"
  if [ "$DEMO" = 1 ] && [ "$NO_RUN" = 0 ]; then
    local login
    login="$("$venv/bin/python" -c 'from astertrack.samples.demo import DEMO_ADMIN; print(" / ".join(DEMO_ADMIN))' 2>/dev/null || true)"
    say "Starting everything in the foreground (Ctrl-C stops it):"
    say "  web admin: http://$web_host:$web_port/${login:+   demo login: $login}"
    exec "$venv/bin/astertrack" run
  fi
  say "Run everything: ASTERTRACK_CONFIG=$conf $venv/bin/astertrack run   (web admin http://$web_host:$web_port/)"
  say "First admin:    ASTERTRACK_CONFIG=$conf $venv/bin/astertrack user add admin --role admin"
}

# ---------------------------------------------------------------- system install

ensure_user() {
  step "system user $SVC_USER"
  if getent passwd "$SVC_USER" >/dev/null 2>&1; then
    say "  exists"
  else
    sys useradd --system --user-group --home-dir "$DATA" --no-create-home \
      --shell /usr/sbin/nologin --comment "astertrack call tracking" "$SVC_USER"
  fi
  # Recordings are written by Asterisk; reading (web admin) and deleting (retention) need its group.
  local members
  if members="$(getent group asterisk 2>/dev/null)"; then
    if printf '%s' "${members##*:}" | tr ',' '\n' | grep -qx "$SVC_USER"; then
      say "  already in group asterisk"
    else
      sys usermod -a -G asterisk "$SVC_USER"
    fi
  fi
}

make_dirs() {
  step "directories"
  install -d -m 0755 "$(r "$PREFIX")"
  install -d -m 0750 "$(r "$ETC")" "$(r "$ETC/conf.d")" "$(r "$DATA")" "$(r "$LOGDIR")"
  install -d -m 0755 "$(r "$UNITDIR")"
  sys chown "root:$SVC_USER" "$(r "$ETC")" "$(r "$ETC/conf.d")"
  sys chown "$SVC_USER:$SVC_USER" "$(r "$DATA")" "$(r "$LOGDIR")"
}

install_venv() {
  if [ "$NO_VENV" = 1 ]; then
    step "virtualenv: skipped (--no-venv)"
    return 0
  fi
  step "virtualenv $PREFIX/venv"
  ensure_venv_module
  local venv stamp digest
  venv="$(r "$PREFIX/venv")"
  stamp="$venv/.astertrack-source"
  digest="$(source_digest)"
  if [ -x "$venv/bin/astertrack" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    say "  up to date (same source as the last install)"
    return 0
  fi
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  quiet_pip "$venv" "$(r "$LOGDIR")/install-pip.log" --upgrade "$SRC[postgres]"
  cp "$SRC/README.md" "$(r "$PREFIX/README.md")" 2>/dev/null || true
  printf '%s\n' "$digest" > "$stamp"
  CODE_CHANGED=1
}

# A fingerprint of what pip would install, so a re-run with the same source skips pip and
# restarts nothing.
source_digest() {
  (cd "$SRC" && find astertrack agi ami_listener webadmin tracker migrations setup.cfg pyproject.toml \
      -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 2>/dev/null | LC_ALL=C sort -z \
      | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# Retention deletes old recordings, which Asterisk writes into its own directory: give the
# service user write access there with an ACL (inherited by new day directories), once.
grant_recordings_access() {
  local recdir dir
  recdir="$(helper get "$CONF" recordings dir --default /var/spool/asterisk/monitor)"
  dir="$(r "$recdir")"
  [ -d "$dir" ] || return 0
  step "recordings directory $recdir"
  if have getfacl && getfacl -p "$dir" 2>/dev/null | grep -q "^default:user:$SVC_USER:rwx"; then
    say "  $SVC_USER may already read and delete recordings"
  elif have setfacl; then
    sys setfacl -R -m "u:$SVC_USER:rwX" -m "d:u:$SVC_USER:rwX" "$dir" \
      || need_action "setfacl failed on $recdir: give $SVC_USER read/write access there, or retention cannot delete recordings"
  else
    need_action "retention cannot delete recordings in $recdir without write access: apt-get install acl and run install.sh again"
  fi
}

astertrack_bin() {
  if [ "$NO_VENV" = 1 ]; then
    printf '%s' "${ASTERTRACK_BIN:-astertrack}"
  else
    printf '%s' "$(r "$PREFIX/venv/bin/astertrack")"
  fi
}

write_config() {
  step "configuration $ETC"
  local main secrets conf_user
  main="$(r "$ETC/astertrack.conf")"
  secrets="$(r "$ETC/conf.d/10-secrets.conf")"
  AMI_USER="astertrack"
  [ -f "$SRC/asterisk-conf/manager_astertrack.conf" ] && AMI_USER="$(helper template-user "$SRC/asterisk-conf/manager_astertrack.conf")"
  if [ -f "$main" ]; then
    say "  $ETC/astertrack.conf exists: kept as it is"
  else
    ( umask 027; cat > "$main" <<EOF
# astertrack configuration, written once by install.sh: your edits are kept on upgrade.
# Later layers win: this file, then conf.d/*.conf in name order, then ASTERTRACK_<SECTION>_<KEY>
# environment variables.  Secrets (database URL, AMI secret, web secret key) live in
# conf.d/10-secrets.conf (mode 0640).  Every key and its default: see the README.

[general]
node = ${NODE:-$(hostname -s 2>/dev/null || echo pbx1)}
data_dir = $DATA

[agi]
listen_host = 127.0.0.1
listen_port = 4573

[ami]
host = 127.0.0.1
port = 5038
username = $AMI_USER

[web]
listen_host = 127.0.0.1
listen_port = 8080

[tracker]
listen_host = 127.0.0.1
listen_port = 8081

[recordings]
dir = /var/spool/asterisk/monitor
EOF
    )
    say "  wrote $ETC/astertrack.conf"
  fi
  if [ -f "$secrets" ]; then
    say "  $ETC/conf.d/10-secrets.conf exists: secrets kept"
    if [ -n "$PG_URL" ]; then
      ASTERTRACK_DB_URL_VALUE="$PG_URL" helper set "$secrets" database url --value-env ASTERTRACK_DB_URL_VALUE
    fi
  else
    ( umask 027; cat > "$secrets" <<EOF
# Generated once by install.sh.  Keep this file 0640 root:$SVC_USER.
[database]
url = ${PG_URL:-sqlite:///$DATA/astertrack.db}

[ami]
secret = $(gen_secret 24)

[web]
secret_key = $(gen_secret 48)
EOF
    )
    say "  wrote $ETC/conf.d/10-secrets.conf (0640)"
  fi
  # The admin's and the tracker's /metrics answer only this bearer token (deploy/README.md);
  # added once to older installs too.
  if [ -z "$(helper get "$secrets" general metrics_token)" ]; then
    ASTERTRACK_METRICS_TOKEN_VALUE="$(gen_secret 32)" \
      helper set "$secrets" general metrics_token --value-env ASTERTRACK_METRICS_TOKEN_VALUE
  fi
  chmod 0640 "$main" "$secrets"
  sys chown "root:$SVC_USER" "$main" "$secrets"
  CONF="$main"
}

migrate_db() {
  step "database schema"
  local url bin
  url="$(helper get "$CONF" database url)"
  bin="$(astertrack_bin)"
  if [[ "$url" == sqlite:///* ]]; then
    local path="${url#sqlite:///}"
    [[ "$path" == /* ]] || die "the SQLite path in the database URL must be absolute: $url"
    install -d -m 0750 "$(dirname "$(r "$path")")"
    ASTERTRACK_CONFIG="$CONF" ASTERTRACK_DATABASE_URL="sqlite:///$(r "$path")" sys "$bin" db upgrade \
      || die "database migration failed (SQLite $path): see the error above"
    local f
    for f in "$(r "$path")" "$(r "$path")-wal" "$(r "$path")-shm"; do
      if [ -e "$f" ]; then sys chown "$SVC_USER:$SVC_USER" "$f"; fi
    done
  else
    ASTERTRACK_CONFIG="$CONF" sys "$bin" db upgrade \
      || die "database migration failed: check [database] url in $ETC/conf.d/10-secrets.conf, that the server is reachable and the database exists (createdb), then run install.sh again"
  fi
}

install_units() {
  step "systemd units"
  local recdir unit target tmp
  recdir="$(helper get "$CONF" recordings dir --default /var/spool/asterisk/monitor)"
  UNITS_CHANGED=0
  FIRST_INSTALL=1
  [ -f "$(r "$UNITDIR/astertrack-agi.service")" ] && FIRST_INSTALL=0
  for unit in $UNITS; do
    target="$(r "$UNITDIR/$unit")"
    tmp="$(mktemp)"
    sed "s#@RECORDINGS_DIR@#$recdir#g" "$SRC/deploy/systemd/$unit" > "$tmp"
    if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
      rm -f "$tmp"
    else
      install -m 0644 "$tmp" "$target"
      rm -f "$tmp"
      say "  installed $UNITDIR/$unit"
      UNITS_CHANGED=1
    fi
  done
  [ "$UNITS_CHANGED" = 1 ] || say "  unchanged"
}

# Install our drop-ins, wire them in with one #include each, merge channelvars, reload.
configure_asterisk() {
  local etc; etc="$(r "$AST_ETC")"
  if [ "$NO_ASTERISK" = 1 ]; then step "Asterisk: skipped (--no-asterisk)"; return 0; fi
  step "Asterisk configuration in $AST_ETC"
  if [ ! -d "$etc" ]; then
    say "  $AST_ETC not found: is Asterisk installed?  Re-run install.sh after installing it."
    need_action "Asterisk config not found in $AST_ETC: install Asterisk, then run install.sh again"
    return 0
  fi
  local conf_src="$SRC/asterisk-conf" out status freepbx=0 changed=0 vars secret
  local mgr_main="manager.conf" ext_main="extensions.conf"
  if [ -f "$etc/manager_custom.conf" ] || [ -f "$etc/extensions_custom.conf" ] || [ -f "$(r /etc/freepbx.conf)" ] \
     || helper looks-generated "$etc/manager.conf"; then
    freepbx=1
    mgr_main="manager_custom.conf"; ext_main="extensions_custom.conf"
    say "  FreePBX-style layout detected: using manager_custom.conf and extensions_custom.conf"
    for f in "$mgr_main" "$ext_main"; do
      [ -f "$etc/$f" ] || { install -m 0644 /dev/null "$etc/$f"; say "  created empty $AST_ETC/$f"; }
    done
  fi
  vars="$(helper snippet-vars "$conf_src/manager_general.conf.snippet" --default "$DEFAULT_CHANNELVARS")"
  secret="$(helper get "$CONF" ami secret)"
  [ -n "$secret" ] || die "no [ami] secret in $ETC/conf.d/10-secrets.conf"

  # The drop-in files themselves (ours: overwritten with the shipped version).
  if [ -f "$conf_src/extensions_astertrack.conf" ]; then
    if ! cmp -s "$conf_src/extensions_astertrack.conf" "$etc/extensions_astertrack.conf" 2>/dev/null; then
      install -m 0644 "$conf_src/extensions_astertrack.conf" "$etc/extensions_astertrack.conf"
      say "  installed $AST_ETC/extensions_astertrack.conf"; changed=1
    fi
  else
    need_action "asterisk-conf/extensions_astertrack.conf is missing from this checkout: no dialplan installed"
  fi
  local mgr_template="$conf_src/manager_astertrack.conf" fallback_template=""
  if [ ! -f "$mgr_template" ]; then
    fallback_template="$(mktemp)"
    # Only when the checkout lacks asterisk-conf/manager_astertrack.conf: the same classes
    # (system, call, agent, user; write=reporting for the resync, originate for callbacks), loopback only.
    printf '[%s]\nsecret = x\ndeny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\nread = system,call,agent,user\nwrite = reporting,originate\nwritetimeout = 5000\n' \
      "$AMI_USER" > "$fallback_template"
    mgr_template="$fallback_template"
  fi
  out="$(ASTERTRACK_AMI_SECRET_VALUE="$secret" helper render-ami-user "$mgr_template" "$etc/manager_astertrack.conf" --username "$AMI_USER")"
  say "$out"; [[ "$out" == *": updated" ]] && changed=1
  [ -n "$fallback_template" ] && rm -f "$fallback_template"
  if getent group asterisk >/dev/null 2>&1; then sys chown root:asterisk "$etc/manager_astertrack.conf"; fi

  # One #include per main file, and the merged [general] settings.
  for pair in "$mgr_main:manager_astertrack.conf:AMI user of the call tracker" \
              "$ext_main:extensions_astertrack.conf:call tracking dialplan (inbound context)"; do
    local file="${pair%%:*}" rest="${pair#*:}"
    local target="${rest%%:*}" why="${rest#*:}"
    [ "$target" = extensions_astertrack.conf ] && [ ! -f "$etc/extensions_astertrack.conf" ] && continue
    set +e; out="$(helper ensure-include "$etc/$file" "$target" --why "$why" $([ "$freepbx" = 1 ] && echo --allow-generated))"; status=$?; set -e
    say "$out"
    [ $status = 3 ] && need_action "${out#*ACTION NEEDED: }"
    [ $status = 0 ] && [[ "$out" == *": updated" ]] && changed=1
    [ $status = 0 ] || [ $status = 3 ] || die "editing $AST_ETC/$file failed"
  done
  if [ "$freepbx" = 1 ]; then
    out="$(helper freepbx-general "$etc/manager_custom.conf" --manager-conf "$etc/manager.conf" --vars "$vars")"
  else
    if [ ! -f "$etc/manager.conf" ]; then
      install -m 0644 /dev/null "$etc/manager.conf"
      printf '[general]\nenabled = yes\nport = 5038\nbindaddr = 127.0.0.1\n' > "$etc/manager.conf"
      say "  created $AST_ETC/manager.conf (AMI on 127.0.0.1:5038)"; changed=1
    fi
    [ -f "$etc/manager.conf.astertrack-orig" ] || cp -p "$etc/manager.conf" "$etc/manager.conf.astertrack-orig"
    set +e; out="$(helper merge-general "$etc/manager.conf" --vars "$vars")"; status=$?; set -e
    [ $status = 3 ] && need_action "${out#*ACTION NEEDED: }"
  fi
  say "$out"
  [[ "$out" == *": updated" ]] && changed=1

  configure_cdr "$etc" "$conf_src"

  if [ "$changed" = 1 ]; then
    if have asterisk; then
      sys asterisk -rx "manager reload" || need_action "Asterisk did not take 'manager reload': is it running? Run it when it is."
      sys asterisk -rx "dialplan reload" || need_action "Asterisk did not take 'dialplan reload': run it when Asterisk is up."
    else
      need_action "the asterisk command is not on PATH: run asterisk -rx 'manager reload' and asterisk -rx 'dialplan reload' yourself"
    fi
  else
    say "  Asterisk config unchanged: no reload"
  fi
  # Two steps only the admin can take (which numbers to track, where calls go when the AGI is down).
  if ! grep -rqs --exclude=extensions_astertrack.conf -e 'astertrack-inbound' -e 'astertrack-freepbx' "$etc"; then
    if [ "$freepbx" = 1 ]; then
      need_action "send tracked numbers to us: FreePBX Admin > Custom Destinations > add astertrack-freepbx,s,1, then point each tracked number's Inbound Route at it and Apply Config"
    else
      need_action "send tracked numbers to us: in your trunk's inbound context add e.g. exten => _74950000XXX,1,Goto(astertrack-inbound,\${EXTEN},1) (or set the trunk's context = astertrack-inbound), then dialplan reload"
    fi
  fi
  if ! grep -rqs --exclude=extensions_astertrack.conf 'ASTERTRACK_CALLBACK_TRUNK' "$etc"; then
    say "  callbacks dial visitors through Local/<number>@from-internal (your outbound routes); to use a trunk directly set ASTERTRACK_CALLBACK_TRUNK = PJSIP/ and ASTERTRACK_CALLBACK_SUFFIX = @<trunk> in [globals]$([ "$freepbx" = 1 ] && echo ' (FreePBX: globals_custom.conf)') (see asterisk-conf/README.md)"
  fi
  if ! grep -rqs --exclude=extensions_astertrack.conf 'ASTERTRACK_DEFAULT_DIAL' "$etc"; then
    need_action "set where calls go when astertrack-agi is down: ASTERTRACK_DEFAULT_DIAL = PJSIP/101 in [globals]$([ "$freepbx" = 1 ] && echo ' (FreePBX: globals_custom.conf)') (see asterisk-conf/README.md)"
  fi
}

# Asterisk's own CDR of every call, one line per leg (asterisk-conf/cdr_custom_astertrack.conf): after a
# gap in the AMI stream (restart, crash, downtime) the listener takes the calls' facts from it.
configure_cdr() {
  local etc="$1" conf_src="$2" out status changed=0 logdir
  [ -f "$conf_src/cdr_custom_astertrack.conf" ] || return 0
  set +e; out="$(helper ensure-cdr-mapping "$etc/cdr_custom.conf" --mapping "$conf_src/cdr_custom_astertrack.conf")"; status=$?; set -e
  say "$out"
  [ $status = 3 ] && need_action "${out#*ACTION NEEDED: }"
  [ $status = 0 ] || [ $status = 3 ] || die "editing $AST_ETC/cdr_custom.conf failed"
  [[ "$out" == *": updated" ]] && changed=1
  logdir="$(sed -n 's/^[[:space:]]*astlogdir[[:space:]]*=>\{0,1\}[[:space:]]*//p' "$etc/asterisk.conf" 2>/dev/null | head -1 || true)"
  logdir="${logdir:-/var/log/asterisk}"
  if [ ! -d "$(r "$logdir/cdr-custom")" ]; then  # cdr_custom writes into it but never creates it
    install -d -m 0755 "$(r "$logdir/cdr-custom")"
    if getent passwd asterisk >/dev/null 2>&1; then sys chown asterisk:asterisk "$(r "$logdir/cdr-custom")"; fi
    say "  created $logdir/cdr-custom"
  fi
  if [ "$logdir" != /var/log/asterisk ]; then
    ASTERTRACK_CDR_FILE_VALUE="$logdir/cdr-custom/astertrack.csv" \
      helper set "$CONF" ami cdr_file --value-env ASTERTRACK_CDR_FILE_VALUE
  fi
  if grep -Eqs '^[[:space:]]*noload[[:space:]]*=>?[[:space:]]*cdr_custom\.so' "$etc/modules.conf"; then
    need_action "modules.conf has 'noload => cdr_custom.so': remove that line, then asterisk -rx 'module load cdr_custom.so' (the AMI listener needs Asterisk's CDR to correct calls after a gap)"
  elif grep -Eqs '^[[:space:]]*batch[[:space:]]*=>?[[:space:]]*(yes|true|1)' "$etc/cdr.conf"; then
    need_action "cdr.conf has batch = yes: CDR lines reach the file minutes late, so calls after a listener restart wait that long for their final figures (batch = no is the default)"
  fi
  if [ "$changed" = 1 ]; then
    if have asterisk; then
      local verb=load
      asterisk -rx "module show like cdr_custom" 2>/dev/null | grep -q 'cdr_custom\.so' && verb=reload
      sys asterisk -rx "module $verb cdr_custom.so" \
        || need_action "Asterisk did not $verb cdr_custom.so: run asterisk -rx 'module $verb cdr_custom.so' when it is up"
    else
      need_action "run asterisk -rx 'module reload cdr_custom.so' (the asterisk command is not on PATH)"
    fi
  fi
}

check_ami() {
  [ "$NO_ASTERISK" = 1 ] && return 0
  if [ "$SKIP_AMI_CHECK" = 1 ]; then step "AMI login check: skipped (--skip-ami-check)"; return 0; fi
  step "AMI login check"
  local out status
  set +e; out="$(helper ami-check "$CONF")"; status=$?; set -e
  say "$out"
  [ $status = 0 ] || need_action "${out#*PROBLEM: }"
}

start_services() {
  step "services"
  if ! have systemctl; then
    need_action "systemctl not found: start astertrack-agi, astertrack-ami and the web services yourself"
    return 0
  fi
  if [ "$UNITS_CHANGED" = 1 ]; then sys systemctl daemon-reload || true; fi
  if [ "$NO_START" = 1 ]; then
    # shellcheck disable=SC2086
    sys systemctl enable $ENABLE || need_action "systemctl enable failed (is systemd running?)"
    return 0
  fi
  # shellcheck disable=SC2086
  sys systemctl enable --now $ENABLE || need_action "systemctl could not start the services: see journalctl -u 'astertrack-*'"
  if [ "$FIRST_INSTALL" = 0 ] && { [ "$UNITS_CHANGED" = 1 ] || [ "${CODE_CHANGED:-0}" = 1 ]; }; then
    sys systemctl try-restart astertrack-agi.service astertrack-ami.service astertrack-web.service astertrack-tracker.service astertrack-webhooks.service || true
  fi
}

summary() {
  local web_port
  web_port="$(helper get "$CONF" web listen_port --default 8080)"
  step "done"
  say "  web admin:   http://127.0.0.1:$web_port/  (put it behind your HTTPS reverse proxy)"
  say "  first admin: sudo -u $SVC_USER ASTERTRACK_CONFIG=$ETC/astertrack.conf $PREFIX/venv/bin/astertrack user add admin --role admin"
  say "  logs:        journalctl -u 'astertrack-*' -f      metrics: http://127.0.0.1:9573/metrics (AGI), :9574 (AMI), /metrics on web"
  say "  transcripts: set [transcription] command in $ETC/astertrack.conf, then systemctl enable --now astertrack-transcription.timer"
  if [ ${#ACTIONS[@]} -gt 0 ]; then
    say ""
    say "!! Things you must do:"
    local a; for a in "${ACTIONS[@]}"; do say "  - $a"; done
  fi
}

# ---------------------------------------------------------------- uninstall

uninstall() {
  local etc unit vars
  etc="$(r "$AST_ETC")"
  step "services"
  if have systemctl; then
    local present=""
    for unit in $UNITS; do [ -f "$(r "$UNITDIR/$unit")" ] && present="$present $unit"; done
    # shellcheck disable=SC2086
    [ -n "$present" ] && { sys systemctl disable --now $present || true; }
  fi
  for unit in $UNITS; do rm -f "$(r "$UNITDIR/$unit")"; done
  have systemctl && { sys systemctl daemon-reload || true; }
  if [ "$NO_ASTERISK" = 0 ] && [ -d "$etc" ]; then
    step "Asterisk configuration"
    vars="$(helper snippet-vars "$SRC/asterisk-conf/manager_general.conf.snippet" --default "$DEFAULT_CHANNELVARS")"
    local f
    for f in manager.conf manager_custom.conf; do helper remove-include "$etc/$f" manager_astertrack.conf; done
    for f in extensions.conf extensions_custom.conf; do helper remove-include "$etc/$f" extensions_astertrack.conf; done
    helper unmerge-general "$etc/manager.conf" --vars "$vars"
    helper remove-general-block "$etc/manager_custom.conf"
    helper remove-cdr-mapping "$etc/cdr_custom.conf" --mapping "$SRC/asterisk-conf/cdr_custom_astertrack.conf"
    rm -f "$etc/manager_astertrack.conf" "$etc/extensions_astertrack.conf" "$etc/manager.conf.astertrack-orig"
    have asterisk && { sys asterisk -rx "manager reload" || true; sys asterisk -rx "dialplan reload" || true; }
    say "  (Asterisk keeps the removed channelvars in memory until its next restart: harmless)"
  fi
  local conf recdir
  conf="$(r "$ETC/astertrack.conf")"
  recdir=/var/spool/asterisk/monitor
  [ -f "$conf" ] && recdir="$(helper get "$conf" recordings dir --default "$recdir")"
  if [ -d "$(r "$recdir")" ] && have getfacl && getfacl -p "$(r "$recdir")" 2>/dev/null | grep -q "user:$SVC_USER:"; then
    sys setfacl -R -x "u:$SVC_USER" -x "d:u:$SVC_USER" "$(r "$recdir")" || true
  fi
  step "files"
  rm -rf "$(r "$PREFIX")" "$(r "$LOGDIR")"
  say "  removed $PREFIX and $LOGDIR"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$(r "$DATA")" "$(r "$ETC")"
    say "  purged $DATA (database) and $ETC (config and secrets)"
    if getent passwd "$SVC_USER" >/dev/null 2>&1; then sys userdel "$SVC_USER" || true; fi
    say "  recordings in Asterisk's monitor directory are Asterisk's files: left in place"
  else
    say "  kept $DATA (database), $ETC (config and secrets) and the recordings; --purge removes data and config"
  fi
}

# ---------------------------------------------------------------- main

case "$MODE" in
  dev)
    dev_setup ;;
  uninstall)
    find_python
    uninstall ;;
  install)
    find_python
    if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then die "run as root (or use --dev for a development checkout)"; fi
    CODE_CHANGED=0
    ensure_user
    make_dirs
    install_venv
    write_config
    migrate_db
    install_units
    grant_recordings_access
    configure_asterisk
    check_ami
    start_services
    summary ;;
esac
