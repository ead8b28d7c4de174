-- duplex.auxlib: what the Lua modules of duplex share, as lauxlib is for
-- C: the name of a value's type, and the one way a bad argument is raised,
-- in luaL_argerror's words: "bad argument #n to 'fname' (why)". Requires
-- nothing but duplex.core; every other Lua module requires it.

local core = require "duplex.core"

local timeout_error = core.timeout_error

local auxlib = { core = core }

--- The name Lua's own errors use for a value: its __name, else its type.
function auxlib.typename(x)
  local mt = getmetatable(x)
  return type(mt) == "table" and type(mt.__name) == "string" and mt.__name or type(x)
end
local typename = auxlib.typename

--- Whether v is an integer: its math.type (5.3 and later); where every
--- number is a double (5.1, LuaJIT), a finite number without fraction.
local mathtype, floor = math.type, math.floor
function auxlib.isinteger(v)
  if mathtype then return mathtype(v) == "integer" end
  return type(v) == "number" and v == floor(v) and v - v == 0   -- (inf - inf is nan)
end

--- Raise "bad argument #n to 'fname' (why)". level is error's, counted
--- from the function that calls argerror: 2 (the default) blames its
--- caller; a helper that checks for a public function passes 3.
function auxlib.argerror(n, fname, why, level)
  error(string.format("bad argument #%d to '%s' (%s)", n, fname, why), (level or 2) + 1)
end
local argerror = auxlib.argerror

-- The checks below are called by the public function itself (the
-- caller's caller is blamed: level 3 here), and build a message only when
-- they fail. None of them tail-calls argerror: that would drop a level.

--- Argument n must hold: raise why otherwise.
function auxlib.argcheck(ok, n, fname, why)
  if not ok then argerror(n, fname, why, 3) end
end

--- Argument n must be of Lua type tname (or nil, when opt).
function auxlib.checktype(v, tname, n, fname, opt)
  if type(v) ~= tname and not (opt and v == nil) then
    argerror(n, fname, tname .. " expected, got " .. typename(v), 3)
  end
end

--- The object a method is called on must have metatable mt, whose
--- __name names what was expected.
function auxlib.checkself(self, mt, fname)
  if getmetatable(self) ~= mt then
    argerror(1, fname, mt.__name .. " expected, got " .. typename(self), 3)
  end
end

--- Argument n is a timeout, by the rule every timeout of duplex follows
--- (nil: none).
function auxlib.checktimeout(v, n, fname)
  local why = timeout_error(v)
  if why then argerror(n, fname, why, 3) end
end

return auxlib
