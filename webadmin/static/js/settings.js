/* The settings forms' builders (templates/settings/_builders.html), as progressive enhancement:
 * without this script every builder still posts its one blank row.  It adds and removes rows
 * (from each block's <template>, numbered past the last row), hides the value a row does not
 * use (present/absent, VIP; a source picked by name instead of a typed value), dims the hours
 * grid while "always open" is ticked, and filters the time-zone list as one types. */
(function () {
  'use strict';

  function rowsOf(button) {
    var box = button.parentNode;
    return {rows: box.querySelector('.builder-rows'), template: box.querySelector('template')};
  }

  function addRow(button) {
    var parts = rowsOf(button);
    if (!parts.rows || !parts.template) return null;
    var next = parseInt(parts.rows.getAttribute('data-next'), 10) || 0;
    parts.rows.setAttribute('data-next', String(next + 1));
    var holder = document.createElement('div');
    holder.innerHTML = parts.template.innerHTML.replace(/__i__/g, String(next));
    var row = holder.querySelector('.builder-row');
    parts.rows.appendChild(row);
    enhance(row);
    var first = row.querySelector('select, input');
    if (first) first.focus();
    return row;
  }

  function valueless(row) {
    var fieldset = row.closest('fieldset.builder');
    return fieldset ? (fieldset.getAttribute('data-valueless') || '').split(' ') : [];
  }

  function syncRow(row) {
    var op = row.querySelector('.c-op');
    var key = row.querySelector('.m-key');
    var skip = valueless(row);
    if (op) {
      var none = skip.indexOf(op.value) >= 0;
      row.querySelector('.c-value').classList.toggle('hidden-part', none);
    }
    if (key) {
      var source = key.value === 'source_ids';
      row.querySelector('.m-source').classList.toggle('hidden-part', !source);
      row.querySelector('.m-value').classList.toggle('hidden-part', source || skip.indexOf(key.value) >= 0);
    }
  }

  function enhance(scope) {
    scope.querySelectorAll('.remove-row, .add-row').forEach(function (button) { button.hidden = false; });
    scope.querySelectorAll('.builder-row').forEach(syncRow);
    if (scope.classList && scope.classList.contains('builder-row')) {
      syncRow(scope);
      scope.querySelectorAll('.remove-row').forEach(function (b) { b.hidden = false; });
    }
  }

  function syncHours(fieldset) {
    var always = fieldset.querySelector('.h-always');
    fieldset.classList.toggle('always', !!(always && always.checked));
    fieldset.querySelectorAll('tr[data-day]').forEach(function (tr) {
      var open = tr.querySelector('input[type=checkbox]');
      tr.classList.toggle('closed', !(open && open.checked));
    });
  }

  function zoneSearch(picker) {
    var input = picker.querySelector('.tz-search');
    var select = picker.querySelector('select');
    if (!input || !select) return;
    input.hidden = false;
    input.addEventListener('input', function () {
      var words = input.value.toLowerCase().replace(/_/g, ' ').split(/\s+/).filter(Boolean);
      var first = null;
      select.querySelectorAll('option').forEach(function (option) {
        var text = (option.value + ' ' + option.textContent).toLowerCase().replace(/_/g, ' ');
        var hit = words.every(function (w) { return text.indexOf(w) >= 0; });
        option.hidden = !hit;
        if (hit && !first) first = option;
      });
      select.querySelectorAll('optgroup').forEach(function (group) {
        group.hidden = !group.querySelector('option:not([hidden])');
      });
      if (first && words.length) select.value = first.value;
    });
  }

  document.addEventListener('click', function (event) {
    var button = event.target.closest('button');
    if (!button) return;
    if (button.classList.contains('add-row')) {
      event.preventDefault();
      addRow(button);
    } else if (button.classList.contains('remove-row')) {
      event.preventDefault();
      var row = button.closest('.builder-row');
      if (row) row.remove();
    }
  });

  document.addEventListener('change', function (event) {
    var row = event.target.closest('.builder-row');
    if (row) syncRow(row);
    var hours = event.target.closest('fieldset.hours');
    if (hours) syncHours(hours);
  });

  enhance(document);
  document.querySelectorAll('fieldset.hours').forEach(syncHours);
  document.querySelectorAll('.tz-picker').forEach(zoneSearch);
})();
