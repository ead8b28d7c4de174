-- dns_query.lua: ask a DNS server for the A records (IPv4 addresses) of a
-- name over UDP, with a query packet built by hand and the answer parsed by
-- hand (compressed names included), in arithmetic every Lua has.
-- Run: lua5.4 examples/dns_query.lua server port name
--   e.g. lua5.4 examples/dns_query.lua 127.0.0.53 53 example.org
-- Prints one line per A record, as dig does: "NAME. TTL IN A ADDRESS".
-- Exit status: 0 with records, 3 when the name does not exist (NXDOMAIN),
-- 4 when it exists without A records, 1 on any other failure (no answer
-- after 3 tries of 2 s, a malformed or truncated answer, another rcode).

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

local TYPE_A, TYPE_CNAME, CLASS_IN = 1, 5, 1
local TRIES, WAIT = 3, 2
local RCODES = { [1] = "FORMERR", [2] = "SERVFAIL", [3] = "NXDOMAIN", [4] = "NOTIMP", [5] = "REFUSED" }

local function fail(code, fmt, ...)
  io.stderr:write(fmt:format(...), "\n")
  os.exit(code)
end

if #arg ~= 3 then fail(2, "usage: dns_query.lua server port name") end
local server, port, name = arg[1], tonumber(arg[2]), arg[3]:gsub("%.$", "")
if port and port % 1 ~= 0 then port = nil end
if not port then fail(2, "bad port: %s", arg[2]) end

-- Big-endian 16-bit numbers, built and read; and a 32-bit one, read.
local function u16(n) return string.char(math.floor(n / 256), n % 256) end
local function get16(p, i)
  local a, b = p:byte(i, i + 1)
  return a * 256 + b
end
local function get32(p, i) return get16(p, i) * 65536 + get16(p, i + 2) end

-- A name as DNS labels: each label is a length byte then its bytes; a
-- zero byte ends the name.
local function encode_name(n)
  local out = {}
  for label in n:gmatch("[^.]+") do
    if #label > 63 then fail(2, "label too long: %s", label) end
    out[#out + 1] = string.char(#label) .. label
  end
  out[#out + 1] = "\0"
  return table.concat(out)
end

-- The query: a 12-byte header (id, flags with RD "recursion desired", one
-- question, no other records), then the question: name, type A, class IN.
math.randomseed(os.time(), math.floor(duplex.now() * 1e6))
local id = math.random(0, 0xffff)
local query = u16(id) .. u16(0x0100) .. u16(1) .. u16(0) .. u16(0) .. u16(0)
    .. encode_name(name) .. u16(TYPE_A) .. u16(CLASS_IN)

-- Read a name at pos (1-based) of packet p: returns the name and the
-- position after it. A name may end in a pointer (two bytes, top bits 11)
-- to a name earlier in the packet; follow at most 20 of them.
local function read_name(p, pos)
  local labels, after, jumps = {}, nil, 0
  while true do
    local len = p:byte(pos)
    if not len then error("name runs past the end") end
    if len == 0 then
      pos = pos + 1
      break
    elseif len >= 0xC0 then
      if pos + 1 > #p then error("pointer runs past the end") end
      jumps = jumps + 1
      if jumps > 20 then error("too many name pointers") end
      after = after or pos + 2
      pos = (len % 64) * 256 + p:byte(pos + 1) + 1   -- the low 14 bits, 0-based
    elseif len > 63 then
      error("bad label length " .. len)
    else
      if pos + len > #p then error("label runs past the end") end
      labels[#labels + 1] = p:sub(pos + 1, pos + len)
      pos = pos + 1 + len
    end
  end
  return table.concat(labels, "."), after or pos
end

-- Parse an answer to our query: the rcode and the A records.
local function parse(p)
  if #p < 12 then error("short packet") end
  local rid, flags, qd, an = get16(p, 1), get16(p, 3), get16(p, 5), get16(p, 7)
  if rid ~= id then return nil end                 -- not ours: keep waiting
  if flags < 0x8000 then error("not a response") end                   -- QR
  if math.floor(flags / 0x0200) % 2 == 1 then                          -- TC
    error("truncated answer (TC): retry over TCP")
  end
  local pos = 13
  for _ = 1, qd do                                 -- skip the question(s)
    local _
    _, pos = read_name(p, pos)
    pos = pos + 4
  end
  local records = {}
  for _ = 1, an do
    local rname, rtype, rclass, ttl, rdlen
    rname, pos = read_name(p, pos)
    if pos + 10 > #p + 1 then error("record header runs past the end") end
    rtype, rclass, ttl, rdlen = get16(p, pos), get16(p, pos + 2), get32(p, pos + 4), get16(p, pos + 8)
    pos = pos + 10
    if pos + rdlen > #p + 1 then error("record data runs past the end") end
    if rtype == TYPE_A and rclass == CLASS_IN then
      if rdlen ~= 4 then error("A record of " .. rdlen .. " bytes") end
      records[#records + 1] = { name = rname, ttl = ttl,
                                addr = table.concat({ p:byte(pos, pos + 3) }, ".") }
    elseif rtype == TYPE_CNAME then
      local target = read_name(p, pos)
      io.stderr:write(rname, ". is an alias for ", target, ".\n")
    end
    pos = pos + rdlen
  end
  return flags % 16, records                       -- the rcode: the low 4 bits
end

-- Send the query, wait WAIT seconds for the answer, TRIES times.
local sock = assert(duplex.udp())                -- reaches IPv4 and IPv6 alike
local ok, err = sock:connect(server, port)       -- only the server's datagrams get through
if not ok then fail(1, "%s", err) end
local rcode, records
for _ = 1, TRIES do
  assert(sock:send(query))
  local deadline = duplex.now() + WAIT
  while duplex.now() < deadline do
    sock:settimeout(math.max(0, deadline - duplex.now()))
    local packet, rerr, code = sock:recv()       -- a whole datagram, up to 64 KiB
    if not packet then
      if code ~= "ETIMEDOUT" then fail(1, "%s", rerr) end
      break
    end
    local okp, rc, recs = pcall(parse, packet)
    if not okp then fail(1, "bad answer: %s", rc) end
    if rc then rcode, records = rc, recs; break end
  end
  if rcode then break end
end
sock:close()

if not rcode then fail(1, "no answer from %s port %d", server, port) end
if rcode == 3 then fail(3, "%s: NXDOMAIN", name) end
if rcode ~= 0 then fail(1, "%s: %s", name, RCODES[rcode] or ("rcode " .. rcode)) end
if #records == 0 then fail(4, "%s: no A records", name) end
for _, r in ipairs(records) do
  io.write(("%s.\t%d\tIN\tA\t%s\n"):format(r.name, r.ttl, r.addr))
end
