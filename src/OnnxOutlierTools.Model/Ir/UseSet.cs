using System.Collections;

namespace OnnxOutlierTools.Ir;

/// <summary>The uses of one value: a set of <see cref="Usage"/> with the first slot inline and the rest in a
/// small array (72 bytes for the usual single use, where a <see cref="HashSet{T}"/> takes about 220). It enumerates in the order a
/// HashSet would (insertion order, a removed slot refilled by the next add, last freed first), so
/// replacing the HashSet changed no traversal order. Large sets (many consumers of one value) get a
/// slot index so adds and removes stay O(1).</summary>
internal sealed class UseSet : IReadOnlyCollection<Usage>
{
    private const int IndexFrom = 16;

    private Usage _first;           // slot 0
    private Usage[] _rest = [];     // slots 1..
    private int _end;               // slots filled or freed
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
            if (_end > _rest.Length) Array.Resize(ref _rest, _rest.Length == 0 ? 1 : _rest.Length * 2);
            slot = _end++;
        }
        Slot(slot) = use;
        _count++;
        if (_index is not null) _index[use] = slot;
        else if (_count > IndexFrom)
        {
            _index = [];
            for (int i = 0; i < _end; i++)
                if (IsUsed(Slot(i))) _index[Slot(i)] = i;
        }
        return true;
    }

    public bool Remove(Usage use)
    {
        int slot = IndexOf(use);
        if (slot < 0) return false;
        Slot(slot) = default;
        _count--;
        _index?.Remove(use);
        (_freed ??= []).Add(slot);
        return true;
    }

    public bool Any(Func<Usage, bool> predicate)
    {
        for (int i = 0; i < _end; i++)
            if (IsUsed(Slot(i)) && predicate(Slot(i))) return true;
        return false;
    }

    public Usage[] ToArray()
    {
        var result = new Usage[_count];
        int n = 0;
        for (int i = 0; i < _end; i++)
            if (IsUsed(Slot(i))) result[n++] = Slot(i);
        return result;
    }

    public IEnumerator<Usage> GetEnumerator()
    {
        for (int i = 0; i < _end; i++)
            if (IsUsed(Slot(i))) yield return Slot(i);
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private int IndexOf(Usage use)
    {
        if (_index is not null) return _index.TryGetValue(use, out int slot) ? slot : -1;
        for (int i = 0; i < _end; i++)
            if (Slot(i) == use && IsUsed(use)) return i;
        return -1;
    }

    private ref Usage Slot(int i) => ref i == 0 ? ref _first : ref _rest[i - 1];

    // A freed slot holds default(Usage): a real use always names a node or a graph.
    private static bool IsUsed(Usage use) => use.Node is not null || use.GraphOutputOf is not null;
}
