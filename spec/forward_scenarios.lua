-- spec/forward_scenarios.lua: the forward scenarios of spec/70, as functions
-- that return what they observed, so that the spec runs them in its own
-- process (splice for bulk streams, the default) and in children started
-- with DUPLEX_SPLICE=off (src's buffer only) and =always (every byte
-- through the pipe). Loopback and port 0 only; every wait is bounded.

local duplex = require "duplex"
local helpers = require "spec.helpers"

local S = {}

-- A python3 peer: "server ADDR N SEED" listens (ADDR "inet" or a Unix
-- path), prints its port, takes one connection, reads it to its end, then
-- sends N seeded bytes and closes; "client PORT|PATH N SEED" connects,
-- sends N seeded bytes, half-closes and reads to the end. Both print
-- "recv SHA256 COUNT" and "sent SHA256 COUNT".
local PEER = [[
import hashlib, random, socket, sys
role, addr, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def data():
    return random.Random(seed).randbytes(n)
def drain(s):
    h, c = hashlib.sha256(), 0
    while True:
        b = s.recv(1 << 16)
        if not b: return h.hexdigest(), c
        h.update(b); c += len(b)
fam = socket.AF_INET if addr.isdigit() or addr == "inet" else socket.AF_UNIX
if role == "server":
    l = socket.socket(fam, socket.SOCK_STREAM)
    l.bind(("127.0.0.1", 0) if fam == socket.AF_INET else addr)
    l.listen(1)
    print("port", l.getsockname()[1] if fam == socket.AF_INET else 0, flush=True)
    l.settimeout(30)
    s, _ = l.accept()
    s.settimeout(30)
    r = drain(s)
    d = data(); s.sendall(d); s.close()
else:
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(("127.0.0.1", int(addr)) if fam == socket.AF_INET else addr)
    d = data(); s.sendall(d); s.shutdown(socket.SHUT_WR)
    r = drain(s)
print("recv", r[0], r[1], flush=True)
print("sent", hashlib.sha256(d).hexdigest(), len(d), flush=True)
]]

local function peer_script()
  local path = os.tmpname()
  helpers.spit(path, PEER)
  return path
end

local function peer(script, ...)
  local args = {}
  for i, v in ipairs({ ... }) do args[i] = helpers.shquote(v) end
  return helpers.spawn_process("timeout 60 python3 " .. script .. " " .. table.concat(args, " "))
end

-- What a peer printed: { recv = {hash, n}, sent = {hash, n} }.
local function report(proc)
  local out = {}
  for _ = 1, 2 do
    local line = proc:read("l")
    if not line then break end
    local what, hash, n = line:match("^(%a+) (%x+) (%d+)$")
    if what then out[what] = { hash, helpers.tointeger(tonumber(n)) } end
  end
  proc:wait(10)
  return out
end

-- A client (python) -> duplex -> a server (python): up bytes from the
-- client, down bytes back once the server saw the client's end. family
-- "inet" or "unix". Returns both forwards' results and the peers' reports.
function S.roundtrip(up, down, family)
  local script = peer_script()
  local dir = family == "unix" and helpers.mktemp_dir("fwd") or nil
  local res
  local ok, err = pcall(duplex.run, function()
    local spath = dir and dir .. "/s.sock"
    local srvp = peer(script, "server", spath or "inet", down, 2)
    local sport = helpers.tointeger(tonumber(srvp:read("l"):match("^port (%d+)")))
    local lst, lport
    if dir then
      lst = assert(duplex.listen("unix:" .. dir .. "/l.sock"))
    else
      lst, lport = helpers.server()
    end
    local clip = peer(script, "client", dir and dir .. "/l.sock" or tostring(lport), up, 1)
    local a = assert(lst:accept(30))
    local b = assert(duplex.connect(dir and "unix:" .. spath or "127.0.0.1", sport, { timeout = 30 }))
    a:settimeout(30)
    b:settimeout(30)
    local t = duplex.spawn(function() return { a:forward(b) } end)
    local downr = { b:forward(a) }
    local _, upr = t:join(60)
    a:close(); b:close(); lst:close()
    res = { up = upr, down = downr, client = report(clip), server = report(srvp) }
  end)
  os.remove(script)
  if dir then helpers.execute("rm -rf " .. helpers.shquote(dir)) end
  assert(ok, err)
  return res
end

-- Deterministic data of n bytes (not all one value; NUL and "\n" in it).
local function data(n, seed)
  local t, x = {}, seed
  for i = 1, 4096 do
    x = helpers.lcg(x)                   -- (x * 1103515245 + 12345) & 0x7fffffff
    t[i] = string.char(math.floor(x / 65536) % 256)
  end
  local block = table.concat(t)
  return block:rep(math.floor(n / #block) + 1):sub(1, n)
end
S.data = data

-- A forward whose destination stops reading: it fails with ETIMEDOUT (the
-- source's timeout limits the time without progress) and the count of
-- bytes dst took; what it had taken from src is not lost: a second forward
-- moves the rest, and the reader gets every byte in order.
function S.timeout_no_loss(n)
  local res
  duplex.run(function()
    local a, b, srv1 = helpers.pair()
    local c, d, srv2 = helpers.pair()
    for _, s in ipairs({ c, d }) do
      s:setoption("sndbuf", 16384); s:setoption("rcvbuf", 16384)
    end
    local want = data(n, 7)
    local w = duplex.spawn(function() return a:write(want) and a:shutdown("w") and true end)
    b:settimeout(0.3)
    local first = { b:forward(c) }
    b:settimeout(30)
    local got = {}
    local r = duplex.spawn(function()
      while true do
        local s = d:readsome()
        if not s then return true end
        got[#got + 1] = s
      end
    end)
    local second = { b:forward(c) }
    c:close()
    local _, rdone = r:join(30)
    local _, wdone = w:join(30)
    local all = table.concat(got)
    res = { first = first, second = second, wrote = wdone, read = rdone,
            same = all == want, total = #all }
    helpers.close(a, b, d, srv1, srv2)
  end)
  return res
end

-- The destination's peer goes away mid-stream: nil, msg, EPIPE or
-- ECONNRESET, count; the process gets no SIGPIPE.
function S.peer_gone(n)
  local res
  duplex.run(function()
    local a, b, srv1 = helpers.pair()
    local c, d, srv2 = helpers.pair()
    local w = duplex.spawn(function() return a:write(data(n, 3)) end)
    local rd = duplex.spawn(function()
      local s = d:read(1000)
      d:close()
      return s and #s
    end)
    local r = { b:forward(c) }
    local _, nread = rd:join(30)
    a:close()
    w:join(30)
    res = { r = r, nread = nread }
    helpers.close(b, c, srv1, srv2)
  end)
  return res
end

return S
