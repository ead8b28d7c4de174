-- spec/53-udp_examples_spec.lua: the datagram examples run as real
-- processes: examples/udp_echo.lua (server and client modes) and
-- examples/dns_query.lua against spec/shim/dns_responder.py, a small DNS
-- server in python3 started here on 127.0.0.1 port 0 (it prints its port).
-- Loopback only; every process is bounded by `timeout` and killed by pid.

local helpers = require "spec.helpers"
local slurp = helpers.slurp

local quote = helpers.shquote
local HAS_V6 = helpers.has_ipv6()
local HAS_PY = helpers.execute("command -v python3 >/dev/null 2>&1") == true


local function example_cmd(script, args, limit)
  local words = {}
  for i, a in ipairs(args) do words[i] = quote(a) end
  return ("timeout -k 2 %d %s examples/%s %s"):format(limit or 20, helpers.lua, script,
    table.concat(words, " "))
end

-- Run an example to its end: { code =, out =, err =, elapsed = }.
local function run(script, args, limit)
  local errf = os.tmpname()
  local t0 = require("duplex").now()
  local out, _, _, code = helpers.readall(example_cmd(script, args, limit) .. " </dev/null 2>" .. quote(errf))
  local err = slurp(errf)
  os.remove(errf)
  return { code = code, out = out, err = err, elapsed = require("duplex").now() - t0 }
end

-- Start a server process; returns the process and the first line it prints.
local started = {}
local function start(cmd)
  local proc = helpers.spawn_process(cmd)
  started[#started + 1] = proc
  local line = proc:read("l")
  return proc, line
end

local function stop_all()
  for i = #started, 1, -1 do started[i]:close() end
  started = {}
end

describe("examples/udp_echo.lua", function()
  after_each(stop_all)

  it("a server on 127.0.0.1 port 0 echoes the client's messages, then stops after its count", function()
    local srv, line = start(example_cmd("udp_echo.lua", { "server", "127.0.0.1", "0", "4" }))
    local port = line and helpers.tointeger(tonumber(line:match("^listening 127%.0%.0%.1 (%d+)$")))
    assert.is_not_nil(port, "server said: " .. tostring(line))
    local r = run("udp_echo.lua", { "client", "127.0.0.1", tostring(port), "hello", "two words", "" })
    assert.same({ code = 0, out = "echo hello\necho two words\necho \n", err = "" },
      { code = r.code, out = r.out, err = r.err })
    r = run("udp_echo.lua", { "client", "127.0.0.1", tostring(port), ("x"):rep(1400) })
    assert.same({ code = 0, out = "echo " .. ("x"):rep(1400) .. "\n", err = "" },
      { code = r.code, out = r.out, err = r.err })
    assert.equal("served 4", srv:read("l"))
    assert.same({ true, "exit", 0 }, { srv:wait(5) })
  end)

  it("over IPv6 (::1)", function()
    if not HAS_V6 then pending("no IPv6 on this machine") end
    local srv, line = start(example_cmd("udp_echo.lua", { "server", "::1", "0", "1" }))
    local port = line and helpers.tointeger(tonumber(line:match("^listening ::1 (%d+)$")))
    assert.is_not_nil(port, "server said: " .. tostring(line))
    local r = run("udp_echo.lua", { "client", "::1", tostring(port), "six" })
    assert.same({ code = 0, out = "echo six\n", err = "" }, { code = r.code, out = r.out, err = r.err })
    assert.equal("served 1", srv:read("l"))
    assert.same({ true, "exit", 0 }, { srv:wait(5) })
  end)

  it("over a Unix datagram socket (the client binds a path of its own); the paths are removed", function()
    local path = helpers.tmpname()
    local srv, line = start(example_cmd("udp_echo.lua", { "server", "unix:" .. path, "0", "2" }))
    assert.equal("listening unix:" .. path, line)
    local r = run("udp_echo.lua", { "client", "unix:" .. path, "-", "a", "b" })
    assert.same({ code = 0, out = "echo a\necho b\n", err = "" }, { code = r.code, out = r.out, err = r.err })
    assert.equal("served 2", srv:read("l"))
    assert.same({ true, "exit", 0 }, { srv:wait(5) })
    assert.is_false(helpers.execute("test -e " .. quote(path)) == true, "the server left " .. path)
  end)

  it("no server: the client reports the refusal, naming the server, and exits 1", function()
    local u = assert(require("duplex").udp("127.0.0.1", 0))
    local _, port = u:getsockname()
    u:close()
    local r = run("udp_echo.lua", { "client", "127.0.0.1", tostring(port), "anyone" })
    assert.same({ code = 1, out = "",
                  err = "no echo for anyone: recv 127.0.0.1:" .. port .. ": Connection refused\n" },
      { code = r.code, out = r.out, err = r.err })
    if not HAS_V6 then return end
    u = assert(require("duplex").udp("::1", 0))
    _, port = u:getsockname()
    u:close()
    r = run("udp_echo.lua", { "client", "::1", tostring(port), "anyone" })
    assert.same({ code = 1, out = "",
                  err = "no echo for anyone: recv [::1]:" .. port .. ": Connection refused\n" },
      { code = r.code, out = r.out, err = r.err })
  end)

  it("bad usage: exit 2 with the usage on stderr", function()
    local r = run("udp_echo.lua", { "bogus" })
    assert.same({ 2, "" }, { r.code, r.out })
    assert.matches("^usage: udp_echo%.lua server", r.err)
  end)
end)

describe("examples/dns_query.lua against a local responder", function()
  after_each(stop_all)

  local function responder(...)
    if not HAS_PY then pending("python3 is needed for the DNS responder") end
    local args = {}
    for i, a in ipairs({ ... }) do args[i] = quote(a) end
    local proc, line = start("timeout -k 2 60 python3 spec/shim/dns_responder.py " .. table.concat(args, " "))
    local port = line and line:match("^listening 127%.0%.0%.1 (%d+)$")
    assert.is_not_nil(port, "responder said: " .. tostring(line))
    return proc, port
  end

  it("an A record; several; one behind a CNAME; a name without A records; NXDOMAIN", function()
    local _, port = responder()
    local function q(name) return run("dns_query.lua", { "127.0.0.1", port, name }) end
    local r = q("example.test")
    assert.same({ code = 0, out = "example.test.\t300\tIN\tA\t192.0.2.1\n", err = "" },
      { code = r.code, out = r.out, err = r.err })
    r = q("multi.example.test.")
    assert.same({ code = 0, err = "",
                  out = "multi.example.test.\t60\tIN\tA\t192.0.2.1\nmulti.example.test.\t60\tIN\tA\t192.0.2.2\n" },
      { code = r.code, out = r.out, err = r.err })
    r = q("alias.example.test")
    assert.same({ code = 0, out = "example.test.\t300\tIN\tA\t192.0.2.1\n",
                  err = "alias.example.test. is an alias for example.test.\n" },
      { code = r.code, out = r.out, err = r.err })
    r = q("empty.example.test")
    assert.same({ code = 4, out = "", err = "empty.example.test: no A records\n" },
      { code = r.code, out = r.out, err = r.err })
    r = q("nope.test")
    assert.same({ code = 3, out = "", err = "nope.test: NXDOMAIN\n" },
      { code = r.code, out = r.out, err = r.err })
  end)

  it("a lost query is sent again; a datagram with another id is ignored", function()
    local _, port = responder("--drop", "1", "--stray")
    local r = run("dns_query.lua", { "127.0.0.1", port, "example.test" })
    assert.same({ code = 0, out = "example.test.\t300\tIN\tA\t192.0.2.1\n", err = "" },
      { code = r.code, out = r.out, err = r.err })
    assert.is_true(r.elapsed >= 1.9 and r.elapsed < 10, "took " .. r.elapsed)
  end)

  it("bad usage: exit 2", function()
    local r = run("dns_query.lua", { "127.0.0.1", "53" })
    assert.same({ code = 2, out = "", err = "usage: dns_query.lua server port name\n" },
      { code = r.code, out = r.out, err = r.err })
  end)
end)
