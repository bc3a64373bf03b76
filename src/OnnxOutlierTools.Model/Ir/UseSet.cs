using System.Collections;

namespace OnnxOutlierTools.Ir;

/// <summary>The uses of one value: a set of <see cref="Usage"/> in one small array (about 80 bytes for
/// the usual single use, where a <see cref="HashSet{T}"/> takes about 220). It enumerates in the order a
/// HashSet would (insertion order, a removed slot refilled by the next add, last freed first), so
/// replacing the HashSet changed no traversal order. Large sets (many consumers of one value) get a
/// slot index so adds and removes stay O(1).</summary>
internal sealed class UseSet : IReadOnlyCollection<Usage>
{
    private const int IndexFrom = 16;

    private Usage[] _slots = [];
    private int _end;      // slots filled or freed
    private int _count;
    private List<int>? _freed;
    private Dictionary<Usage, int>? _index;

    public int Count => _count;

    public bool Add(Usage use)
    {
        if (IndexOf(use) >= 0) return false;
        int slot;
        if (_freed is { Count: > 0 })
        {
            slot = _freed[^1];
            _freed.RemoveAt(_freed.Count - 1);
        }
        else
        {
            if (_end == _slots.Length) Array.Resize(ref _slots, _slots.Length == 0 ? 1 : _slots.Length * 2);
            slot = _end++;
        }
        _slots[slot] = use;
        _count++;
        if (_index is not null) _index[use] = slot;
        else if (_count > IndexFrom)
        {
            _index = [];
            for (int i = 0; i < _end; i++)
                if (IsUsed(_slots[i])) _index[_slots[i]] = i;
        }
        return true;
    }

    public bool Remove(Usage use)
    {
        int slot = IndexOf(use);
        if (slot < 0) return false;
        _slots[slot] = default;
        _count--;
        _index?.Remove(use);
        (_freed ??= []).Add(slot);
        return true;
    }

    public bool Any(Func<Usage, bool> predicate)
    {
        for (int i = 0; i < _end; i++)
            if (IsUsed(_slots[i]) && predicate(_slots[i])) return true;
        return false;
    }

    public Usage[] ToArray()
    {
        var result = new Usage[_count];
        int n = 0;
        for (int i = 0; i < _end; i++)
            if (IsUsed(_slots[i])) result[n++] = _slots[i];
        return result;
    }

    public IEnumerator<Usage> GetEnumerator()
    {
        for (int i = 0; i < _end; i++)
            if (IsUsed(_slots[i])) yield return _slots[i];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private int IndexOf(Usage use)
    {
        if (_index is not null) return _index.TryGetValue(use, out int slot) ? slot : -1;
        for (int i = 0; i < _end; i++)
            if (_slots[i] == use && IsUsed(use)) return i;
        return -1;
    }

    // A freed slot holds default(Usage): a real use always names a node or a graph.
    private static bool IsUsed(Usage use) => use.Node is not null || use.GraphOutputOf is not null;
}
