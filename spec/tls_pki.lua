-- spec/tls_pki.lua: the test PKI for the TLS specs, made at test time with
-- the openssl CLI (shared/TLS.md A7.1) into a temporary directory, never
-- committed; plus small helpers for the peers the TLS specs start
-- (openssl s_server/s_client, python3, curl): every one is started with a
-- bounded lifetime, waited for with a bound, and killed by its PID.
--
-- The PKI is made once per busted run: busted insulates each spec file
-- (package.loaded is restored), so the paths are kept in the Lua registry,
-- which insulation leaves alone, and the directory is removed when the
-- interpreter closes (busted ends with os.exit(code, true)). A directory
-- left by a run that was killed is removed by the next run.
--
--   local pki = require "spec.tls_pki"
--   local P = pki.get()        -- P.ca, P.server.crt, P.server.key, ...
--
-- Files (all PEM):
--   ca                      the test CA (P.ca, P.ca_key)
--   server      ec          DNS:localhost, IP:127.0.0.1, IP:::1
--   serverrsa   rsa-2048    DNS:localhost, IP:127.0.0.1
--   wronghost   ec          DNS:not-localhost.example
--   dnsonly     ec          DNS:localhost only (an IP host does not match)
--   expired     ec          DNS:localhost, IP:127.0.0.1; 2020-01-01 .. 2020-01-02
--   selfsigned  ec          CN=localhost, DNS:localhost, IP:127.0.0.1, not from the CA
--   other       ec          DNS:localhost, IP:127.0.0.1, signed by another CA (P.otherca)
--   badip       ec          DNS:localhost and an IP address entry 1 byte long
--   client      ec          DNS:client.test (serverAuth, clientAuth), from the CA
--   chained     ec          DNS:localhost, IP:127.0.0.1, from an intermediate CA;
--                           chained.crt holds the leaf then the intermediate
--   locked      ec          the server's certificate, its key encrypted
--                           with the password P.password
-- Each leaf NAME is P[NAME] = { crt = path, key = path }.

local duplex = require "duplex"
local helpers = require "spec.helpers"     -- (what differs between Lua versions)

local M = {}

local REGKEY = "duplex.spec.tls_pki"

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shquote = shquote

local function mypid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return helpers.tointeger(pid)
end
M.mypid = mypid

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end
M.exists = exists

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.readfile = readfile

local function writefile(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end
M.writefile = writefile

local SCRIPT = [==[
set -e
cd "$1"
exec 2>>gen.log >>gen.log
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.crt \
  -days 2 -subj "/CN=duplex test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout otherca.key -out otherca.crt \
  -days 2 -subj "/CN=another test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
key() { # name alg
  if [ "$2" = rsa ]; then openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $1.key
  else openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key; fi
}
leaf() { # name alg san [ca]
  ca=${4:-ca}
  key $1 $2
  openssl req -new -key $1.key -subj "/CN=$1" -out $1.csr
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $ca.crt -CAkey $ca.key -CAcreateserial -extfile $1.ext -out $1.crt -days 2
}
leaf server ec "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf serverrsa rsa "DNS:localhost,IP:127.0.0.1"
leaf wronghost ec "DNS:not-localhost.example"
leaf dnsonly ec "DNS:localhost"
leaf client ec "DNS:client.test"
leaf other ec "DNS:localhost,IP:127.0.0.1" otherca
# DNS:localhost, then an IP address entry one byte long (malformed)
leaf badip ec "DER:300e82096c6f63616c686f73748701ff"
# an intermediate CA, and a leaf from it served with its chain
key inter ec
openssl req -new -key inter.key -subj "/CN=duplex test intermediate" -out inter.csr
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > inter.ext
openssl x509 -req -in inter.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile inter.ext -out inter.crt -days 2
leaf chainleaf ec "DNS:localhost,IP:127.0.0.1" inter
cat chainleaf.crt inter.crt > chained.crt
cp chainleaf.key chained.key
# the server's key under a password
openssl pkey -in server.key -aes256 -passout pass:duplex-secret -out locked.key
cp server.crt locked.crt
# self-signed, not from any CA we trust
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout selfsigned.key \
  -out selfsigned.crt -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
# expired: `openssl ca` can back-date (x509 -req cannot)
key expired ec
openssl req -new -key expired.key -subj "/CN=expired" -out expired.csr
mkdir -p newcerts
: > index.txt
echo 1000 > serial
cat > ca.cnf <<EOF
[ ca ]
default_ca = test
[ test ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
default_md = sha256
policy = anything
copy_extensions = copy
x509_extensions = leafext
unique_subject = no
[ anything ]
commonName = supplied
[ leafext ]
subjectAltName = DNS:localhost,IP:127.0.0.1
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth,clientAuth
EOF
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr -out expired.crt \
  -startdate 20200101000000Z -enddate 20200102000000Z
touch done
]==]

local LEAVES = { "server", "serverrsa", "wronghost", "dnsonly", "client", "other", "badip",
                 "chained", "locked", "selfsigned", "expired" }

local function paths(dir)
  local P = { dir = dir, ca = dir .. "/ca.crt", ca_key = dir .. "/ca.key",
              otherca = dir .. "/otherca.crt", password = "duplex-secret" }
  for _, name in ipairs(LEAVES) do
    P[name] = { crt = dir .. "/" .. name .. ".crt", key = dir .. "/" .. name .. ".key" }
  end
  return P
end

-- Remove the PKI directories of runs whose process is gone.
local function sweep(base)
  local p = io.popen("ls -d " .. base .. "/duplex-tls-pki-* 2>/dev/null")
  if not p then return end
  for d in p:lines() do
    local pid = d:match("duplex%-tls%-pki%-(%d+)$")
    if pid and not exists("/proc/" .. pid .. "/stat") then
      os.execute("rm -rf " .. shquote(d))
    end
  end
  p:close()
end

--- The PKI's paths (made on the first call of this busted run).
function M.get()
  local reg = debug.getregistry()
  if reg[REGKEY] then return reg[REGKEY].paths end
  local base = os.getenv("TMPDIR") or "/tmp"
  sweep(base)
  local dir = base .. "/duplex-tls-pki-" .. mypid()
  if not exists(dir .. "/done") then
    os.execute("rm -rf " .. shquote(dir))
    assert(helpers.execute("mkdir -p " .. shquote(dir)))
    local script = dir .. "/gen.sh"
    writefile(script, SCRIPT)
    local ok = helpers.execute("sh " .. shquote(script) .. " " .. shquote(dir))
    if not ok then
      error("making the test PKI failed:\n" .. (readfile(dir .. "/gen.log") or "?"))
    end
  end
  -- removed when the interpreter closes
  local sentinel = setmetatable({}, { __gc = function()
    if mypid() == tonumber(dir:match("(%d+)$")) then os.execute("rm -rf " .. shquote(dir)) end
  end })
  reg[REGKEY] = { paths = paths(dir), sentinel = sentinel }
  return reg[REGKEY].paths
end

-- Processes -------------------------------------------------------------

-- Sleep that yields inside a duplex task and blocks outside one.
local function nap(s) duplex.sleep(s) end
M.nap = nap

local function proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  if not s then return nil end               -- (gone between open and read)
  return s:match(".*%)%s+(%a)")
end

local tmpcount = 0
--- A fresh path in the PKI directory (for logs and scripts).
function M.tmp(suffix)
  tmpcount = tmpcount + 1
  return string.format("%s/t%d-%d%s", M.get().dir, mypid(), tmpcount, suffix or "")
end

--- Start cmd (a shell command line) in the background, under `timeout -s
--- KILL life` so that it can never outlive the test by more than life
--- seconds. Its stdout and stderr go to a file (proc.out), read with
--- proc:output(). With opts.stdin, proc:send(s) writes to its stdin.
---   proc:wait(t)   -> true, code | nil, "timeout"   (bounded; yields in tasks)
---   proc:close()   -> TERM (then KILL) by pid, then reap; idempotent
---   proc:await(pattern, t) -> the first capture of pattern in its output,
---                             or nil, "timeout"/"exited", output
function M.spawn(cmd, opts)
  opts = opts or {}
  local life = opts.life or 30
  local out = M.tmp(".out")
  local pidfile = M.tmp(".pid")
  writefile(out, "")
  -- Peers run without the sanitizer runtime that `make asan` preloads
  -- (curl hangs under it); duplex children are started otherwise.
  local line = string.format("echo $$ > %s; exec env -u LD_PRELOAD timeout -s KILL %d %s >>%s 2>&1 %s",
    shquote(pidfile), life, cmd, shquote(out), opts.stdin and "" or "</dev/null")
  local statusfile
  line, statusfile = helpers.with_status(line)
  local pipe = assert(io.popen(line, opts.stdin and "w" or "r"))
  local pid
  for _ = 1, 500 do
    local s = readfile(pidfile)
    pid = s and helpers.tointeger(tonumber(s:match("%d+")))
    if pid then break end
    os.execute("sleep 0.01")
  end
  os.remove(pidfile)
  assert(pid, "no pid for " .. cmd)
  local proc = { pid = pid, out = out, reaped = false, cmd = cmd }

  function proc:output() return readfile(out) or "" end

  function proc:send(s)
    pipe:write(s)
    pipe:flush()
  end

  function proc:alive()
    local st = proc_state(self.pid)
    return st ~= nil and st ~= "Z"
  end

  function proc:wait(t)
    if self.reaped then return helpers.unpack(self.status, 1, 3) end
    local deadline = duplex.now() + (t or 10)
    while self:alive() do
      if duplex.now() >= deadline then return nil, "timeout" end
      nap(0.02)
    end
    local ok, how, code = helpers.closed_status(statusfile, pipe:close())
    self.status = { ok, how, code }
    self.reaped = true
    return ok, how, code
  end

  -- pid is `timeout`'s, which passes TERM on to the command.
  function proc:kill(sig)
    if not self.reaped and self:alive() then
      os.execute(string.format("kill -%s %d 2>/dev/null", sig or "TERM", self.pid))
    end
  end

  function proc:close()
    if self.reaped then return end
    self:kill("TERM")
    if not self:wait(3) then
      self:kill("KILL")
      self:wait(3)
    end
    os.remove(out)
  end

  function proc:await(pattern, t)
    local deadline = duplex.now() + (t or 10)
    while true do
      local s = self:output()
      local cap = s:match(pattern)
      if cap then return cap end
      if not self:alive() then
        s = self:output()
        cap = s:match(pattern)
        if cap then return cap end
        return nil, "exited", s
      end
      if duplex.now() >= deadline then return nil, "timeout", s end
      nap(0.02)
    end
  end

  return setmetatable(proc, { __close = function(p) p:close() end })   -- (<close>: 5.4)
end

--- openssl s_server on 127.0.0.1 with a kernel-chosen port: proc, port.
--- args: the rest of the command line (quoted by the caller).
function M.s_server(args, opts)
  opts = opts or {}
  local proc = M.spawn("openssl s_server -accept 127.0.0.1:0 " .. args, opts)
  local port, why, out = proc:await("ACCEPT [%d.]+:(%d+)", 10)
  if not port then
    proc:close()
    error("s_server did not start (" .. why .. "): " .. tostring(out))
  end
  return proc, helpers.tointeger(tonumber(port))
end

-- The python3 prologue of every python peer: a deadline of its own.
M.PY_PROLOGUE = [[
import os, signal, socket, ssl, sys, time
signal.alarm(30)
def out(*a):
    print(*a, flush=True)
]]

--- A python3 peer running code (after M.PY_PROLOGUE) with args.
function M.python(code, args, opts)
  local script = M.tmp(".py")
  writefile(script, M.PY_PROLOGUE .. code)
  local a = {}
  for i, v in ipairs(args or {}) do a[i] = shquote(v) end
  local proc = M.spawn("python3 -u " .. shquote(script) .. " " .. table.concat(a, " "), opts)
  local close = proc.close
  function proc:close()
    close(self)
    os.remove(script)
  end
  return proc
end

-- duplex pairs ----------------------------------------------------------

--- Context options for a server with leaf `name` (default "server"),
--- plus the options in extra.
function M.server_opts(name, extra)
  local P = M.get()
  local o = { certificate = P[name or "server"].crt, key = P[name or "server"].key }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

--- Client context options trusting the test CA, plus extra.
function M.client_opts(extra)
  local o = { cafile = M.get().ca }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

--- Inside duplex.run: a TLS server on 127.0.0.1 (listen options lopts,
--- whose tls defaults to M.server_opts()), a client connected to it as
--- `host` (default "localhost") with connect's tls = copts (default
--- M.client_opts()), and the accepted end with its handshake done. Both
--- ends get a 5 s timeout. Returns c, p, srv, or raises with both sides'
--- errors. The caller closes them (M.close).
function M.pair(copts, lopts, host)
  lopts = lopts or {}
  if lopts.tls == nil then lopts.tls = M.server_opts() end
  local srv = assert(duplex.listen("127.0.0.1", 0, lopts))
  local _, port = srv:getsockname()
  local acc = duplex.spawn(function()
    local p, msg = srv:accept(5)
    if not p then return nil, msg end
    p:settimeout(5)
    local ok, hmsg, code = p:handshake(5)
    if not ok then
      p:close()
      return nil, hmsg, code
    end
    return p
  end)
  local c, msg, code = duplex.connect(host or "localhost", port,
    { tls = copts == nil and M.client_opts() or copts, timeout = 5 })
  local _, p, pmsg, pcode = acc:join(10)
  if not c or not p then
    if c then c:close() end
    if p then p:close() end
    srv:close()
    error(string.format("no TLS pair: client %s %s; server %s %s",
      tostring(msg), tostring(code), tostring(pmsg), tostring(pcode)), 2)
  end
  c:settimeout(5)
  return c, p, srv, port
end

--- Close every argument that is not nil.
function M.close(...)
  for i = 1, select("#", ...) do
    local o = select(i, ...)
    if o ~= nil then o:close() end
  end
end

--- Whether a command is available.
function M.have(cmd)
  return helpers.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

return M
