namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>A linear input seen on calibration tokens: a sample of its rows (one per token, [RowCount, Channels] row-major
/// fp32) and the exact per-channel max |x| over every token run (the sample may miss the one token, BOS say, that sets a
/// channel's max; the max never misses it).</summary>
public sealed class CapturedActivation
{
    /// <param name="channelAbsMax">max |x| per channel over all tokens; null: computed from <paramref name="rows"/>.</param>
    /// <param name="tokenIndices">Each row's token index in the calibration run (windows concatenated); null: 0, 1, 2...</param>
    public CapturedActivation(string name, int channels, float[] rows, double[]? channelAbsMax = null, long tokensSeen = -1, int[]? tokenIndices = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        if (rows.Length % channels != 0) throw new ArgumentException($"{rows.Length} values are not rows of {channels} channels", nameof(rows));
        Name = name;
        Channels = channels;
        Rows = rows;
        ChannelAbsMax = channelAbsMax ?? AbsMaxOf(rows, channels);
        if (ChannelAbsMax.Length != channels) throw new ArgumentException($"{ChannelAbsMax.Length} channel maxima for {channels} channels", nameof(channelAbsMax));
        TokensSeen = tokensSeen < 0 ? RowCount : tokensSeen;
        TokenIndices = tokenIndices ?? Enumerable.Range(0, RowCount).ToArray();
        if (TokenIndices.Count != RowCount) throw new ArgumentException($"{TokenIndices.Count} token indices for {RowCount} rows", nameof(tokenIndices));
    }

    /// <summary>The graph value captured.</summary>
    public string Name { get; }
    public int Channels { get; }
    /// <summary>The sampled rows, [RowCount, Channels] row-major.</summary>
    public float[] Rows { get; }
    public int RowCount => Rows.Length / Channels;
    public double[] ChannelAbsMax { get; }
    /// <summary>Tokens the calibration run fed (all of them, not only the sampled rows).</summary>
    public long TokensSeen { get; }
    public IReadOnlyList<int> TokenIndices { get; }

    public ReadOnlySpan<float> Row(int index) => Rows.AsSpan(index * Channels, Channels);

    private static double[] AbsMaxOf(float[] rows, int channels)
    {
        var max = new double[channels];
        for (int i = 0; i < rows.Length; i++)
        {
            double a = Math.Abs((double)rows[i]);
            int c = i % channels;
            if (double.IsNaN(a) || a > max[c]) max[c] = a;
        }
        return max;
    }
}
