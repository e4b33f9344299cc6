-- Converters for argparse options: a value, or nil and why (argparse prints it with the usage).
local convert = {}

--- A number >= min.
function convert.number_at_least(min)
  return function(s)
    local n = tonumber(s)
    if not n or n < min then return nil, "'" .. s .. "' is not a number >= " .. min end
    return n
  end
end

--- A whole number from min to max.
function convert.whole(min, max)
  return function(s)
    local n = tonumber(s)
    if not n or n ~= math.floor(n) or n < min or n > max then
      return nil, "'" .. s .. "' is not a whole number from " .. min .. " to " .. max
    end
    return n
  end
end

--- A number > 0 (and finite).
function convert.positive(s)
  local n = tonumber(s)
  if not n or not (n > 0 and n < math.huge) then return nil, "'" .. s .. "' is not a positive number" end
  return n
end

return convert
