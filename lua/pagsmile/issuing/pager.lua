-- A list read walked to its end (SPEC.md §13): a date range cut into windows the platform
-- takes (at most api.MAX_RANGE_DAYS days each, both ends counted), each window read page by
-- page (api.MAX_PAGE_SIZE entries a page) until a page comes back short. client.lua's
-- card_transactions is the one user; the walk knows nothing of HTTP: `fetch(biz)` is one
-- call of the page endpoint, with the client's validation, deadline and retries.
local schema = require "pagsmile.issuing.schema"

local pager = {}

local floor, format = math.floor, string.format

-- The date of a day number (days since 1970-01-01): the inverse of schema.day_number.
local function date_of(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return format("%04d-%02d-%02d", y, m, d)
end
pager.date_of = date_of

--- The range from..to (yyyy-MM-dd, from <= to) as windows of at most `days` days:
-- { {from, to}, ... } in order, covering every day once.
function pager.windows(from, to, days)
  local first, last = schema.day_number(from), schema.day_number(to)
  local out = {}
  for d = first, last, days do
    out[#out + 1] = { date_of(d), date_of(math.min(d + days - 1, last)) }
  end
  return out
end

--- An iterator over every entry `field` of every page: fetch(biz) -> page | nil, err, where
-- biz is `query` with the window's dates and page_num/page_size. It returns each entry, then
-- nil; a failed page, or a platform that answers one page's entries again (page_num
-- ignored: the walk would never end), is returned once as `false, err` and ends the walk.
function pager.walk(fetch, query, field, size, days, protocol_error)
  local windows = pager.windows(query.start_date, query.end_date, days)
  local w, page_num, list, i, last, finished = 1, 0, {}, 0, false, false
  local previous
  return function()
    while not finished do
      i = i + 1
      if list[i] ~= nil then return list[i] end
      if last then
        w, page_num, last, previous = w + 1, 0, false, nil
        if w > #windows then break end
      end
      page_num = page_num + 1
      local biz = { page_num = page_num, page_size = size }
      for k, v in pairs(query) do biz[k] = v end
      biz.start_date, biz.end_date = windows[w][1], windows[w][2]
      local page, err = fetch(biz)
      if not page then
        finished = true
        return false, err
      end
      list, i = page[field], 0
      last = #list < size
      local head = list[1] and list[1].transaction_id
      if head ~= nil and head == previous then
        finished = true
        return false, protocol_error("page " .. page_num .. " repeats the entries of page "
          .. (page_num - 1) .. ": the platform ignores page_num", page.request_id)
      end
      previous = head
    end
    finished = true
    return nil
  end
end

return pager
