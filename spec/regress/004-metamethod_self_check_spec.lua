-- Symptom: calling the client metatable's __gc or __close with something
-- that is not a client (a number, a table, a server, another userdata)
-- killed the process with SIGSEGV instead of raising; given a server, it
-- first closed the server's descriptor.
-- Cause: the client's __gc/__close (c_gc) took argument 1 with
-- lua_touserdata and no type check ("Lua calls them only on our own
-- objects"), but getmetatable(client) hands them to any Lua code.
-- Fix: every metamethod of duplex.client and duplex.server checks its
-- argument first and raises "bad argument #1 ... (duplex.client expected,
-- got ...)" (resp. duplex.server), leaving the value it was given alone.
--
-- Each call runs in a child process, as the old code crashes the
-- interpreter; the child reports the error raised, then shows that the
-- server and the client are still open and still work.
local helpers = require "spec.helpers"

local child = [[
local duplex = require "duplex"
local srv = assert(duplex.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
local p = assert(srv:accept(5))
c:settimeout(5); p:settimeout(5)
local mt = getmetatable(KIND == "client" and c or srv)
local args = { number = 42, table = {}, string = "duplex.client", file = io.stderr,
  server = srv, client = c }
local ok, err = pcall(mt[METHOD], args[ARG])
io.stdout:write("raised: ", tostring(not ok), "\n", "error: ", tostring(err), "\n")
io.stdout:write("types: ", tostring(duplex.type(srv)), ", ", tostring(duplex.type(c)), "\n")
-- still usable: the server accepts, the client writes
local c2 = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
local p2 = assert(srv:accept(5))
assert(c:write("still here\n"))
io.stdout:write("read: ", tostring(p:read("l")), "\n")
c2:close(); p2:close(); c:close(); p:close(); srv:close()
io.stdout:write("done\n")
]]

-- Run the child for one call: its output and exit status in one string.
local function call_in_child(kind, method, arg)
  local script = string.format("local KIND, METHOD, ARG = %q, %q, %q\n", kind, method, arg)
    .. child
  local cmd = string.format("timeout -k 2 20 %s -e %s 2>&1", helpers.lua, helpers.shquote(script))
  local out, ok, how, code = helpers.readall(cmd)
  return out, { ok, how, code }
end

local cases = {
  client = { "number", "table", "string", "file", "server" },
  server = { "number", "table", "string", "file", "client" },
}

describe("regression 004: client and server metamethods given a value of another type", function()
  for _, kind in ipairs({ "client", "server" }) do
    for _, method in ipairs({ "__gc", "__close", "__tostring" }) do
      it(string.format("the %s metatable's %s raises 'duplex.%s expected' and harms nothing",
          kind, method, kind), function()
        local want_err = "duplex." .. kind .. " expected, got "
        local results = {}
        for _, arg in ipairs(cases[kind]) do
          local out, status = call_in_child(kind, method, arg)
          local err = out:match("error: ([^\n]*)")
          local fine = status[1] == true and status[3] == 0
            and out:find("raised: true\n", 1, true) ~= nil
            and err ~= nil and err:find(want_err, 1, true) ~= nil
            and out:find("types: server, client\nread: still here\ndone\n", 1, true) ~= nil
          results[arg] = fine and "raised" or string.format("%s %s: %s",
            tostring(status[2]), tostring(status[3]), out)
        end
        local want = {}
        for _, arg in ipairs(cases[kind]) do want[arg] = "raised" end
        assert.same(want, results)
      end)
    end
  end
end)
