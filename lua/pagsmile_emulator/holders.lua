-- luacheck: globals ngx
-- Cardholders (SPEC.md §9, §10): create, query, update, upload documents, and the review.
-- A new holder is pending (audit_status 3); once it has an ID document (file_type 1) and a
-- proof of address (2) it is under review (4), and it is approved (1) on its
-- `holder_review_polls`-th query after that (default 2), or `holder_review_after` seconds
-- after (whichever first), or by `POST /_sandbox/holders/{id}/approve`. Every change of
-- audit_status sends the audit notification (notify_type 3). Documents keep what was checked
-- (size, Base64, extension, a digest), never their bytes.
local json = require "pagsmile.issuing.json"
local api = require "pagsmile.issuing.api"
local state = require "pagsmile_emulator.state"
local webhooks = require "pagsmile_emulator.webhooks"

local M = {}

-- CustomerAuditStatus and holder status as the client reads them (api.AUDIT_STATUS).
local APPROVED, PENDING, REVIEWING = 1, 3, 4
local ENABLED = 1

local FIELDS = { "mobile", "first_name", "last_name", "id_no", "id_type", "issuance_date",
  "expires_on", "email", "birthday", "gender", "nationality_code" }

function M.load(holder_id)
  local id = state.long_string(holder_id)
  return id and state.get("holder:" .. id)
end

function M.save(h)
  state.set("holder:" .. h.holder_id, h)
end

local function index_key(id_no, id_type)
  return "holder_idx:" .. tostring(id_type) .. ":" .. id_no
end

-- Copies the record fields of biz (create/update) into h.
local function fill(h, biz)
  for _, k in ipairs(FIELDS) do h[k] = biz[k] end
  local a = biz.address
  h.address = { line = a.line, line2 = a.line2, postal_code = a.postal_code,
                city_name = a.city_name, state = a.state, country_code = a.country_code,
                address_id = h.address and h.address.address_id or state.dict():incr("addr_seq", 1, 104000) }
end

--- A holder record for an apply that names a new `holder` (the platform creates one): kept
-- by id only, approved (the apply's own review is out of scope here).
function M.register(holder_id, biz_holder)
  local h = { holder_id = holder_id, audit_status = APPROVED, status = ENABLED, documents = {} }
  fill(h, biz_holder)
  M.save(h)
end

local function answer(h)
  return { holder_id = json.long(h.holder_id), id_no = h.id_no, id_type = h.id_type,
           audit_status = h.audit_status }
end

local function set_audit(h, status)
  local before = h.audit_status
  if before == status then return end
  h.audit_status = status
  if status == APPROVED then h.status = ENABLED end
  M.save(h)
  webhooks.notify(3, { holder_id = json.long(h.holder_id), pre_status = before, status = status,
                       codes = {}, remark = api.AUDIT_STATUS[status] },
                  { holder_id = h.holder_id }, h.sub_partner_id)
end

-- Under review: approved on its N-th query after both documents, or after S seconds.
local function review_due(h)
  if h.audit_status ~= REVIEWING then return false end
  local s = state.settings()
  local polls = tonumber(s.holder_review_polls) or 2
  if polls > 0 and (h.review_queries or 0) >= polls then return true end
  local after = tonumber(s.holder_review_after) or 0
  return after > 0 and ngx.now() >= (h.review_from or 0) + after
end

function M.create(req, biz)
  local d = state.dict()
  local id = state.next_id()
  local added = d:add(index_key(biz.id_no, biz.id_type), id)
  if not added then return state.refuse("holder-exists", "a cardholder with this id exists") end
  local h = { holder_id = id, audit_status = PENDING, status = 0, documents = {},
              sub_partner_id = req.sub_partner_id or "" }
  fill(h, biz)
  M.save(h)
  local data = answer(h)
  data.audit_msg = json.null
  return nil, data
end

function M.query(_, biz)
  local h
  if biz.holder_id ~= nil then
    h = M.load(biz.holder_id)
  else
    local id = state.dict():get(index_key(biz.id_no, biz.id_type))
    h = id and M.load(id)
  end
  if not h then return state.refuse("holder-not-found", "cardholder does not exist") end
  if h.audit_status == REVIEWING then
    h.review_queries = (h.review_queries or 0) + 1
    M.save(h)
    if review_due(h) then set_audit(h, APPROVED) end
  end
  local data = answer(h)
  for _, k in ipairs(FIELDS) do data[k] = h[k] end
  data.address = h.address
  data.status = h.status
  return nil, data
end

function M.update(_, biz)
  local h = M.load(biz.holder_id)
  if not h then return state.refuse("holder-not-found", "cardholder does not exist") end
  local d = state.dict()
  local old, new = index_key(h.id_no, h.id_type), index_key(biz.id_no, biz.id_type)
  if old ~= new then
    if not d:add(new, h.holder_id) then
      return state.refuse("holder-exists", "a cardholder with this id exists")
    end
    d:delete(old)
  end
  fill(h, biz)
  M.save(h)
  return nil, answer(h)
end

-- Approval by time, for a holder still under review (a query after the time approves too).
local function approve_later(premature, holder_id)
  if premature then return end
  local h = M.load(holder_id)
  if h and h.audit_status == REVIEWING then set_audit(h, APPROVED) end
end

function M.upload(_, biz)
  local h = M.load(biz.holder_id)
  if not h then return state.refuse("holder-not-found", "cardholder does not exist") end
  local bytes = ngx.decode_base64(biz.file_content)
  if not bytes then return state.refuse("invalid-parameter", "file_content is not Base64") end
  if #bytes > api.DOCUMENT_MAX_BYTES then
    return state.refuse("file-too-large", "the file is larger than 2M")
  end
  local id = state.dict():incr("doc_seq", 1, 100600)
  h.documents[#h.documents + 1] = {
    id = id, file_type = biz.file_type, file_name = biz.file_name, size = #bytes,
    md5 = ngx.md5(bytes), checks = { base64 = true, size = true, extension = true },
  }
  local kinds = {}
  for _, doc in ipairs(h.documents) do kinds[doc.file_type] = true end
  M.save(h)
  if h.audit_status == PENDING and kinds[api.FILE_TYPE.id_document]
     and kinds[api.FILE_TYPE.proof_of_address] then
    h.review_queries, h.review_from = 0, ngx.now()
    set_audit(h, REVIEWING)
    local after = tonumber(state.settings().holder_review_after) or 0
    if after > 0 then
      local ok, err = ngx.timer.at(after, approve_later, h.holder_id)
      if not ok then ngx.log(ngx.ERR, "sandbox: cannot schedule a review: ", err) end
    end
  end
  return nil, { id = id }
end

--- Approves a holder now (control API).
function M.approve(holder_id)
  local h = M.load(holder_id)
  if not h then return nil end
  set_audit(h, APPROVED)
  return h
end

--- The control view: every holder, without document bytes (never kept) or digests.
function M.view()
  local out = {}
  for _, id in ipairs(state.names_under("holder:")) do
    local h = M.load(id)
    local docs = {}
    for i, doc in ipairs(h.documents or {}) do
      docs[i] = { id = doc.id, file_type = doc.file_type, file_name = doc.file_name,
                  size = doc.size, checks = doc.checks }
    end
    out[id] = { holder_id = id, audit_status = h.audit_status, status = h.status,
                documents = docs, review_queries = h.review_queries }
  end
  return out
end

return M
