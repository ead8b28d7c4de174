-- duplex.ssl: a table shaped like LuaSec's `ssl` module, as copas,
-- ssl.https and LuaSec's examples use it (newcontext, wrap, and the
-- connection's dohandshake, sni, settimeout, receive, send, close,
-- getpeercertificate, info, ...), on duplex's TLS and LuaSocket's face
-- (duplex.socket). A connection takes the face's tcp{client} over and
-- does its I/O through that client's duplex object after starttls: it
-- buffers as the face does and, inside duplex.run, waits by yielding.
--
--   require("duplex.ssl").install()   -- `require "ssl"` (ssl.https, copas) gets it
--
-- Parameters are LuaSec's and are honoured as given (verify = "none"
-- too); without `verify`, a client verifies as duplex does: the chain
-- against cafile/capath (else the system's store) and the name given to
-- sni() or to connect. Parses on Lua 5.1 to 5.4 and LuaJIT.

local duplex = require "duplex"
local aux = require "duplex.socket_aux"
local tcp = require "duplex.socket_tcp"

local type, tostring, pairs, ipairs, tonumber = type, tostring, pairs, ipairs, tonumber
local pcall = duplex.pcall      -- a task may wait inside it on every Lua
local setmetatable, getmetatable, error = setmetatable, getmetatable, error
local byte, sub, find, match = string.byte, string.sub, string.find, string.match
local huge = math.huge

local ssl = {
  _VERSION = "1.2.0",                    -- the LuaSec it copies
  _DUPLEX = duplex._VERSION,
  _COPYRIGHT = "duplex.ssl: LuaSec's face on duplex",
  config = {
    protocols = { tlsv1_2 = true, tlsv1_3 = true },
    algorithms = { ec = true },
    capabilities = { alpn = true },
    options = {}, verify = { none = true, peer = true, fail_if_no_peer_cert = true, client_once = true },
  },
}

-- --- contexts ------------------------------------------------------------------

local CTX = { __name = "SSL:Context", __index = {} }
function CTX.__tostring(c) return "SSL context: " .. c.addr end

-- An object of class mt, with its own address for tostring (taken before
-- the class's __tostring can hide it).
local function new(o, mt)
  o.addr = tostring(o):match("0x%x+") or tostring(o):match("%x+$")
  return setmetatable(o, mt)
end

local function isctx(c) return type(c) == "table" and getmetatable(c) == CTX end

-- LuaSec's protocol names: only TLS 1.2 and 1.3 are duplex's.
local protocols = {
  any = {}, sslv23 = {}, tlsv1_2 = { "tls1.2", "tls1.2" }, tlsv1_3 = { "tls1.3", "tls1.3" },
}

-- verify = "none" | "peer" | { "peer", "fail_if_no_peer_cert", ... }, or nil.
local function verifyflags(v)
  local f = {}
  if type(v) == "string" then f[v] = true
  elseif type(v) == "table" then for _, s in ipairs(v) do f[s] = true end
  elseif v ~= nil then return nil, "invalid verify option (" .. tostring(v) .. ")" end
  for name in pairs(f) do
    if not ssl.config.verify[name] then return nil, "invalid verify option (" .. tostring(name) .. ")" end
  end
  return f
end

local function alpnlist(a, mode)
  if a == nil then return nil end
  if type(a) == "string" and mode == "client" then a = { a } end
  if type(a) ~= "table" then
    if type(a) == "function" then return nil, "duplex.ssl: an ALPN callback is not supported" end
    return nil, "invalid ALPN parameter"
  end
  local out = {}
  for i, p in ipairs(a) do
    if type(p) ~= "string" or #p == 0 or #p > 255 then return nil, "invalid ALPN name" end
    out[i] = p
  end
  if #out == 0 then return nil, "invalid ALPN list (empty)" end
  return out
end

-- A duplex context for this SSL:Context and a client's server name (SNI,
-- and the name checked), made once per name.
local function dxcontext(c, servername)
  local key = servername or ""
  local x = c.dx[key]
  if x then return x end
  local o = {}
  for k, v in pairs(c.opts) do o[k] = v end
  o.servername = servername
  local ok, res = pcall(duplex.tls.context, o)
  if not ok then
    return nil, (tostring(res):gsub("^.-duplex%.tls%.context: ", ""))
  end
  c.dx[key] = res
  return res
end

-- newcontext(params) -> an SSL:Context, or nil, message
function ssl.newcontext(cfg)
  if type(cfg) ~= "table" then error("bad argument #1 to 'newcontext' (table expected)", 2) end
  if not duplex.tls then return nil, "duplex was built without TLS" end
  local proto = protocols[cfg.protocol or "any"]
  if not proto then return nil, "invalid protocol (" .. tostring(cfg.protocol) .. ")" end
  local mode = cfg.mode
  if mode ~= "client" and mode ~= "server" then return nil, "invalid mode" end
  local o = { minversion = proto[1], maxversion = proto[2] }
  for _, opt in ipairs(type(cfg.options) == "table" and cfg.options or { cfg.options }) do
    if opt == "no_tlsv1_2" then o.minversion = "tls1.3" end
    if opt == "no_tlsv1_3" then o.maxversion = "tls1.2" end
  end
  local cert = cfg.certificates and cfg.certificates[1] or cfg
  o.certificate, o.key = cert.certificate, cert.key
  local pw = cert.password
  if type(pw) == "function" then pw = pw() end
  if pw ~= nil and type(pw) ~= "string" then return nil, "invalid password type" end
  o.password = pw
  o.cafile, o.capath = cfg.cafile, cfg.capath
  o.ciphers, o.ciphersuites = cfg.ciphers, cfg.ciphersuites
  local flags, e = verifyflags(cfg.verify)
  if not flags then return nil, e end
  if mode == "server" then
    if flags.peer then o.verify = flags.fail_if_no_peer_cert and true or "optional"
    else o.verify = false end
  elseif flags.peer then
    o.verify, o.checkname = true, false      -- LuaSec checks the chain, not the name
  elseif cfg.verify ~= nil then
    o.verify = false                         -- "none", or flags without "peer": OpenSSL checks nothing
  end                                        -- none given: duplex's default (chain and name)
  local alpn
  alpn, e = alpnlist(cfg.alpn, mode)
  if e then return nil, e end
  o.alpn = alpn
  local c = new({ mode = mode, opts = o, dx = {}, verify = o.verify ~= false }, CTX)
  local x
  x, e = dxcontext(c, nil)                   -- files and options checked now
  if not x then return nil, e end
  if mode == "server" and not cert.certificate then return nil, "duplex.ssl: a server needs a certificate and a key" end
  return c
end

-- --- connections ---------------------------------------------------------------

local C = {}                                  -- the methods
local CONN = { __name = "SSL:Connection", __index = C }
function CONN.__tostring(s)
  return "SSL connection: " .. s.addr .. (s.state == "closed" and " (closed)" or "")
end

-- <close> (5.4) closes it, as LuaSec's __close; collection leaves it to
-- the duplex client's own __gc (close_notify once, then close).
function CONN.__close(s) C.close(s) end

local function checkconn(self, fname)
  if type(self) ~= "table" or getmetatable(self) ~= CONN then
    error(("bad argument #1 to '%s' (SSL:Connection expected, got %s)"):format(fname, type(self)), 3)
  end
  return self
end

-- wrap(sock, params_or_ctx) -> an SSL:Connection, or nil, message. sock
-- is the face's tcp{client}: it hands its duplex client over (as after
-- LuaSec's setfd(-1), its getfd says -1 and its I/O says "closed").
function ssl.wrap(sock, cfg)
  local ctx, e = cfg, nil
  if type(cfg) == "table" and not isctx(cfg) then
    ctx, e = ssl.newcontext(cfg)
    if not ctx then return nil, e end
  elseif not isctx(cfg) then
    error("bad argument #2 to 'wrap' (invalid context)", 2)
  end
  local cls = type(sock) == "table" and getmetatable(sock) and sock.class
  if cls ~= "tcp{client}" or getmetatable(sock) ~= tcp.classes["tcp{client}"] then
    return nil, "duplex.ssl: wrap takes a connected tcp{client} of duplex.socket"
  end
  local d = sock.d
  if not d or sock.fdover then return nil, "closed" end
  local s = new({
    d = d, ctx = ctx, mode = ctx.mode, state = "new",
    block = -1, total = -1, recvd = 0, sent = 0, birth = duplex.now(),
  }, CONN)
  if sock.host and not find(sock.host, "^[%d.]+$") and not find(sock.host, ":", 1, true) then
    s.host = sock.host                        -- SNI and the name checked, as duplex's connect
  end
  sock.d, sock.fdover = nil, -1               -- the face's object lets go of it
  return s
end

-- sni(name) on a client: the name sent and checked. sni({ [name] = ctx
-- }, strict) on a server: the context for each name a client asks for;
-- strict refuses other names (a client that names none gets the
-- connection's own context).
function C.sni(self, names, strict)
  checkconn(self, "sni")
  if self.mode == "client" then
    if type(names) ~= "string" then error("bad argument #2 to 'sni' (string expected, got " .. type(names) .. ")", 2) end
    self.servername = names
  else
    if type(names) ~= "table" then error("bad argument #2 to 'sni' (table expected, got " .. type(names) .. ")", 2) end
    for k, v in pairs(names) do
      if type(k) ~= "string" or not isctx(v) then error("bad argument #2 to 'sni' (invalid context)", 2) end
    end
    self.snimap, self.strict = names, not not strict
  end
end

-- --- a server's SNI: the ClientHello read first -----------------------------------

-- How many bytes the records in buf need before the ClientHello they
-- carry is whole: nil when it is whole (or buf is not TLS: TLS says so).
local function hello_needs(buf)
  local pos, hs = 1, 0
  while true do
    if #buf < pos + 4 then return pos + 4 end
    if byte(buf, pos) ~= 22 then return nil end        -- not a handshake record
    local len = byte(buf, pos + 3) * 256 + byte(buf, pos + 4)
    if #buf < pos + 4 + len then return pos + 4 + len end
    hs = hs + len
    pos = pos + 5 + len
    if hs >= 4 and #buf >= 9 then                     -- the message's length, in the first record
      local want = 4 + byte(buf, 7) * 65536 + byte(buf, 8) * 256 + byte(buf, 9)
      if hs >= want or pos > 65536 then return nil end
    end
  end
end

-- The handshake bytes of buf's records, concatenated.
local function handshake_bytes(buf)
  local out, pos = {}, 1
  while #buf >= pos + 4 and byte(buf, pos) == 22 do
    local len = byte(buf, pos + 3) * 256 + byte(buf, pos + 4)
    out[#out + 1] = sub(buf, pos + 5, pos + 4 + len)
    pos = pos + 5 + len
  end
  return table.concat(out)
end

local function u16(s, i) return byte(s, i) * 256 + byte(s, i + 1) end

-- The server name a ClientHello asks for, or nil.
local function hello_name(buf)
  local h = handshake_bytes(buf)
  if #h < 4 or byte(h, 1) ~= 1 then return nil end
  local pos = 5 + 2 + 32                              -- type, length; version, random
  if #h < pos then return nil end
  pos = pos + 1 + byte(h, pos)                        -- session id
  if #h < pos + 1 then return nil end
  pos = pos + 2 + u16(h, pos)                         -- cipher suites
  if #h < pos then return nil end
  pos = pos + 1 + byte(h, pos)                        -- compression methods
  if #h < pos + 1 then return nil end
  local last = pos + 1 + u16(h, pos)
  pos = pos + 2
  while pos + 3 <= last and pos + 3 <= #h do
    local t, len = u16(h, pos), u16(h, pos + 2)
    if t == 0 and pos + 8 <= #h then                  -- server_name: list, type 0, name
      local n = u16(h, pos + 7)
      if byte(h, pos + 6) == 0 then return sub(h, pos + 9, pos + 8 + n) end
      return nil
    end
    pos = pos + 4 + len
  end
  return nil
end

-- Read the ClientHello (kept in self.hello across "wantread"s): true, or
-- false, LuaSec's error.
local function readhello(self)
  local buf = self.hello or ""
  while true do
    local need = hello_needs(buf)
    if not need then break end
    local s, e, part = tcp.receive(self, need, buf)
    if not s then
      self.hello = part
      if e == "timeout" then return false, "wantread" end
      return false, e
    end
    buf = s
  end
  self.hello = buf
  return true
end

-- --- handshake -------------------------------------------------------------------

-- The handshake failed: false, what LuaSec says [, duplex's reason],
-- now and at every later dohandshake.
local function failed(self, e, why)
  self.state, self.failure, self.why = "failed", e, why
  if why == nil then return false, e end
  return false, e, why
end

local function fail(self, msg, code, want)
  if code == "EAGAIN" or code == "ETIMEDOUT" then
    self.wanting = want or "read"
    return false, want == "write" and "wantwrite" or "wantread"
  end
  self.wanting = nil
  local why = type(msg) == "string" and (match(msg, "^tls handshake [^ ]*: (.*)$") or msg) or "closed"
  if code == "ECERT" then return failed(self, "certificate verify failed", why) end
  if code == "ECONNRESET" or code == "EPIPE" or code == "ECANCELED" or code == "EBADF" then
    return failed(self, "closed", why)
  end
  return failed(self, aux.err(msg, code) == "closed" and "closed" or why)
end

local function timeout(self)
  local t = aux.oncetimeout(self)
  if t == nil then return huge end
  return t
end

-- dohandshake() -> true, or false, "wantread" | "wantwrite" (the
-- timeout ran out: 0 never waits) | "closed" | "certificate verify
-- failed" (with duplex's reason as a third result) | OpenSSL's reason.
function C.dohandshake(self)
  checkconn(self, "dohandshake")
  local st = self.state
  if st == "connected" then return true end
  if st == "closed" then return false, "closed" end
  if st == "failed" then return failed(self, self.failure, self.why) end
  local d = self.d
  local ok, msg, code, want
  if st == "new" then
    local ctx, servername = self.ctx, nil
    local ahead = nil
    if self.mode == "server" and self.snimap then
      local done, e = readhello(self)
      if not done then
        if e == "wantread" then self.wanting = "read"; return false, e end
        return failed(self, e)
      end
      ahead, self.hello = self.hello, nil
      local name = hello_name(ahead)
      local chosen = name and self.snimap[name]
      if chosen then ctx = chosen
      elseif name and self.strict then
        d:settimeout(0)
        d:write("\21\3\3\0\2\2\112")           -- a fatal unrecognized_name alert
        self.applied = nil
        return failed(self, "unrecognized name")
      end
    elseif self.mode == "client" then
      servername = self.servername or self.host
    end
    local x, e = dxcontext(ctx, servername)
    if not x then return failed(self, e) end
    local called
    called, ok, msg, code, want = pcall(d.starttls, d, x, timeout(self), ahead)
    if not called then return failed(self, (tostring(ok):gsub("^.-starttls: ", ""))) end
    self.state = "handshake"
    self.verified = ctx.verify
  else
    ok, msg, code, want = d:handshake(timeout(self))
  end
  self.applied = nil
  if ok then
    self.state, self.wanting = "connected", nil
    return true
  end
  return fail(self, msg, code, want)
end

-- --- I/O: the face's receive and send, with LuaSec's words ------------------------

function C.receive(self, pat, prefix)
  checkconn(self, "receive")
  if self.state ~= "connected" then return nil, "closed", prefix ~= nil and tostring(prefix) or "" end
  local s, e, part = tcp.receive(self, pat, prefix)
  if s then return s end
  if e == "timeout" then self.wanting = "read"; return nil, "wantread", part end
  return nil, e, part
end

function C.send(self, data, i, j)
  checkconn(self, "send")
  if self.state ~= "connected" then return nil, "closed", (i or 1) - 1 end
  local n, e, last = tcp.send(self, data, i, j)
  if n then return n end
  if e == "timeout" then self.wanting = "write"; return nil, "wantwrite", last end
  return nil, e, last
end

function C.settimeout(self, t, mode)
  checkconn(self, "settimeout")
  return aux.settimeout(self, t, mode)
end

function C.close(self)
  checkconn(self, "close")
  if self.state ~= "closed" then
    self.state = "closed"
    if self.d then self.d:close() end
  end
end

function C.getfd(self)
  checkconn(self, "getfd")
  local d = self.state ~= "closed" and self.d
  return aux.num(d and d:fileno() or -1)
end

function C.dirty(self)
  checkconn(self, "dirty")
  local d = self.d
  return self.state ~= "closed" and d:buffered() > 0
end

function C.want(self)
  checkconn(self, "want")
  if self.state == "closed" then return "nothing" end
  return self.wanting or "nothing"
end

function C.getstats(self)
  checkconn(self, "getstats")
  return aux.num(self.recvd), aux.num(self.sent), aux.num(duplex.now() - self.birth)
end

function C.setstats(self, r, s, a)
  checkconn(self, "setstats")
  self.recvd = tonumber(r) or self.recvd
  self.sent = tonumber(s) or self.sent
  if tonumber(a) then self.birth = duplex.now() - tonumber(a) end
  return aux.num(1)
end

local function tlsinfo(self)
  if self.state ~= "connected" then return nil end
  return self.d:tlsinfo()
end

function C.getsniname(self)
  checkconn(self, "getsniname")
  local t = self.state ~= "closed" and self.d:tlsinfo()
  return t and t.servername or nil
end

function C.getalpn(self)
  checkconn(self, "getalpn")
  local t = tlsinfo(self)
  return t and t.alpn or nil
end

-- info([field]) -> { protocol =, cipher =, bits =, algbits = } (what
-- duplex's tlsinfo tells), or the field.
function C.info(self, field)
  checkconn(self, "info")
  local t = tlsinfo(self)
  if not t then return nil end
  local bits = t.cipher and (match(t.cipher, "CHACHA20") and 256 or tonumber(match(t.cipher, "AES_?(%d+)")))
  local i = { protocol = t.version, cipher = t.cipher, bits = bits, algbits = bits }
  if field then return i[field] end
  return i
end

-- getpeerverification() -> true when the peer's chain was checked (the
-- handshake fails otherwise), else false, and why not.
function C.getpeerverification(self)
  checkconn(self, "getpeerverification")
  if self.state ~= "connected" then return false, "closed" end
  if self.verified then return true end
  return false, "the peer was not verified (verify = \"none\")"
end

-- --- the peer's certificate ------------------------------------------------------

local oids = {
  C = { "2.5.4.6", "countryName" }, ST = { "2.5.4.8", "stateOrProvinceName" },
  L = { "2.5.4.7", "localityName" }, O = { "2.5.4.10", "organizationName" },
  OU = { "2.5.4.11", "organizationalUnitName" }, CN = { "2.5.4.3", "commonName" },
  emailAddress = { "1.2.840.113549.1.9.1", "emailAddress" }, serialNumber = { "2.5.4.5", "serialNumber" },
  DC = { "0.9.2342.19200300.100.1.25", "domainComponent" },
}

-- "/C=BR/CN=Server A" as LuaSec's list of { oid =, name =, value = }.
local function dn(text)
  local out = {}
  for k, v in (text or ""):gmatch("/([%w%.]+)=([^/]*)") do
    local o = oids[k]
    out[#out + 1] = { oid = o and o[1] or k, name = o and o[2] or k, value = v }
  end
  return out
end

local CERT = { __name = "SSL:Certificate", __index = {} }
local X = CERT.__index
function CERT.__tostring(c) return "X509 certificate: " .. c.addr end
function X.subject(c) return dn(c.peer.subject) end
function X.issuer(c) return dn(c.peer.issuer) end
function X.notafter(c) return c.peer.notafter end
-- extensions() -> { ["2.5.29.17"] = { dNSName = {...}, iPAddress = {...} } }
-- (the subjectAltName: the one extension duplex's tlsinfo tells)
function X.extensions(c)
  local san = c.peer.san or {}
  if #san == 0 then return {} end
  local dns, ips = {}, {}
  for _, n in ipairs(san) do
    if find(n, "^[%d.]+$") or find(n, ":", 1, true) then ips[#ips + 1] = n else dns[#dns + 1] = n end
  end
  local e = { name = "X509v3 Subject Alternative Name" }
  if #dns > 0 then e.dNSName = dns end
  if #ips > 0 then e.iPAddress = ips end
  return { ["2.5.29.17"] = e }
end

-- getpeercertificate() -> the peer's certificate (subject, issuer,
-- notafter, extensions), or nil when it sent none
function C.getpeercertificate(self, n)
  checkconn(self, "getpeercertificate")
  if self.state ~= "connected" then return nil, "closed" end
  if n ~= nil and n ~= 1 then
    if tonumber(n) and tonumber(n) < 1 then return nil, "invalid certificate index" end
    return nil                                  -- the chain is not duplex's to tell
  end
  local t = self.d:tlsinfo()
  if not t or not t.peer then return nil end
  return new({ peer = t.peer }, CERT)
end

-- --- install ------------------------------------------------------------------------

-- Make this the `ssl` module that require gives (ssl.https, copas),
-- installing duplex.socket first if it is not the socket.core yet.
function ssl.install()
  local loaded = package.loaded
  if loaded.ssl ~= nil and loaded.ssl ~= ssl then
    error("duplex.ssl: LuaSec's own ssl was loaded first", 2)
  end
  if loaded["socket.core"] ~= require("duplex.socket") then require("duplex.socket").install() end
  loaded.ssl = ssl
  return ssl
end

return ssl
