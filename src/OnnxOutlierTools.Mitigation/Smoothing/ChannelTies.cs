namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>Groups of channels that must share one smoothing scale: o_proj's input channels (h, d) of every query head h that
/// reads the same KV head, since they are copies of one v_proj output column (grouped-query attention), or the channels of one
/// packed tensor that a single edit scales together. A channel in no group has a scale of its own. The scale formula then sees
/// each group's maxima reduced by max (both max|X_j| and max|W_j|), so every member gets the same scale.</summary>
public sealed class ChannelTies
{
    private readonly int[][] _groups;

    public ChannelTies(int channels, IEnumerable<IReadOnlyList<int>> groups)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(channels);
        ArgumentNullException.ThrowIfNull(groups);
        Channels = channels;
        var seen = new bool[channels];
        var list = new List<int[]>();
        foreach (var group in groups)
        {
            foreach (int c in group)
            {
                if (c < 0 || c >= channels) throw new ArgumentException($"tied channel {c} is outside [0, {channels})", nameof(groups));
                if (seen[c]) throw new ArgumentException($"channel {c} is in two tie groups", nameof(groups));
                seen[c] = true;
            }
            if (group.Count > 1) list.Add(group.ToArray());
        }
        _groups = list.ToArray();
    }

    public int Channels { get; }
    public IReadOnlyList<IReadOnlyList<int>> Groups => _groups;

    /// <summary>Grouped-query attention seen from o_proj's input [heads * headSize] (head-major): channel (h, d) of every query
    /// head h of one KV group (h / (heads / kvHeads)) shares a scale with the same d of the group's other heads.</summary>
    public static ChannelTies GroupedHeads(int heads, int kvHeads, int headSize)
    {
        if (heads <= 0 || kvHeads <= 0 || headSize <= 0 || heads % kvHeads != 0)
            throw new ArgumentException($"{heads} query heads cannot share {kvHeads} KV heads");
        int perGroup = heads / kvHeads;
        var groups = new List<int[]>();
        for (int g = 0; g < kvHeads; g++)
            for (int d = 0; d < headSize; d++)
                groups.Add(Enumerable.Range(0, perGroup).Select(i => (g * perGroup + i) * headSize + d).ToArray());
        return new ChannelTies(heads * headSize, groups);
    }

    /// <summary>Replaces every member of a group by the group's max, in place (NaN wins, as in the maxima it reduces).</summary>
    public void ReduceMax(Span<double> values)
    {
        if (values.Length != Channels) throw new ArgumentException($"{values.Length} values for {Channels} channels", nameof(values));
        foreach (var group in _groups)
        {
            double max = double.NegativeInfinity;
            foreach (int c in group) max = double.IsNaN(values[c]) || values[c] > max ? values[c] : max;
            foreach (int c in group) values[c] = max;
        }
    }
}
