namespace OnnxOutlierTools.Probes;

/// <summary>A token of the calibration corpus: the window (or encoder segment) it was fed in, its position there, its id.</summary>
public readonly record struct TokenRef(int Window, int Position, int TokenId);

/// <summary>One token's summary at one probe point.</summary>
public sealed record TokenSummary(TokenRef Token, double MaxAbs, double MedianAbs, int ArgMaxChannel)
{
    /// <summary>max |x| / median |x| over the token's channels (infinity when the median is 0 and the max is not).</summary>
    public double Ratio => MedianAbs > 0 ? MaxAbs / MedianAbs : MaxAbs > 0 ? double.PositiveInfinity : 0;
}

/// <summary>One of the largest |x| of a point: the signed value, where it was.</summary>
public sealed record TopEntry(double Value, TokenRef Token, int Channel)
{
    public double Abs => Math.Abs(Value);
}

/// <summary>The tokens of one batch as fed: row b of the [B, S] ids is window <see cref="Windows"/>[b] from position 0.</summary>
/// <summary>The tokens of one batch as fed: row b of the [B, S] ids is window <see cref="Windows"/>[b] from position
/// <see cref="StartPosition"/> (0, or the past length when a step model is fed one token at a time).</summary>
public sealed record BatchTokens(IReadOnlyList<int> Windows, int SequenceLength, IReadOnlyList<int> Ids, int StartPosition = 0)
{
    public int Batch => Windows.Count;
    /// <summary>The token at <paramref name="index"/> (0 .. S-1) of row <paramref name="row"/>.</summary>
    public TokenRef At(int row, int index) => new(Windows[row], StartPosition + index, Ids[row * SequenceLength + index]);
}

/// <summary>Statistics of one probe point merged over every batch: memory is bounded by the channel count and the kept
/// list sizes, never by the corpus. Activation points fill the channel arrays, token summaries and top entries;
/// attention points fill <see cref="AttentionMass"/>.</summary>
public sealed class PointStatistics
{
    /// <summary>How many tokens of each kind are kept: the largest |x| entries, and the tokens with the largest max |x|
    /// and the largest max/median ratio.</summary>
    public const int KeptTokens = 64;

    /// <summary>Per-position maxima are kept for this many leading positions of each window.</summary>
    public const int LeadingPositions = 16;

    public PointStatistics(string id, int channels, int topK)
    {
        Id = id;
        Channels = channels;
        TopK = topK;
        ChannelMax = Filled(channels, double.NegativeInfinity);
        ChannelMin = Filled(channels, double.PositiveInfinity);
        ChannelSum = new double[channels];
        ChannelSumSquares = new double[channels];
        ChannelSumFourth = new double[channels];
        ChannelAboveCount = new long[channels];
    }

    public string Id { get; }
    public int Channels { get; }
    public int TopK { get; }

    /// <summary>Token rows seen (batch x sequence, summed over batches).</summary>
    public long Tokens { get; private set; }

    public double[] ChannelMax { get; }
    public double[] ChannelMin { get; }
    public double[] ChannelSum { get; }
    public double[] ChannelSumSquares { get; }
    public double[] ChannelSumFourth { get; }
    public long[] ChannelAboveCount { get; }

    /// <summary>The <see cref="TopK"/> largest |x| over everything seen, descending.</summary>
    public List<TopEntry> Top { get; } = [];

    /// <summary>The <see cref="KeptTokens"/> tokens with the largest max |x|, descending.</summary>
    public List<TokenSummary> LargestTokens { get; } = [];

    /// <summary>The <see cref="KeptTokens"/> tokens with the largest max/median ratio, descending.</summary>
    public List<TokenSummary> HighestRatioTokens { get; } = [];

    /// <summary>Per-token max |x| and median |x| over the corpus (for the layer-wide median and quantiles).</summary>
    public LogHistogram TokenMaxAbs { get; } = new();
    public LogHistogram TokenMedianAbs { get; } = new();

    /// <summary>Max over windows of the token max |x| at each of the first <see cref="LeadingPositions"/> positions (NaN: unseen).</summary>
    public double[] PositionMaxAbs { get; } = Filled(LeadingPositions, double.NaN);

    /// <summary>Attention points: probability mass summed over queries (and windows), [heads][positions]; null for activations.</summary>
    public double[][]? AttentionMass { get; private set; }

    public double ChannelMean(int c) => Tokens == 0 ? double.NaN : ChannelSum[c] / Tokens;

    /// <summary>Population variance of channel c (from the fp64 sums; fine for calibration-sized corpora).</summary>
    public double ChannelVariance(int c)
    {
        if (Tokens == 0) return double.NaN;
        double mean = ChannelSum[c] / Tokens;
        return Math.Max(0, ChannelSumSquares[c] / Tokens - mean * mean);
    }

    /// <summary>Non-central kurtosis E[x^4] / E[x^2]^2 of channel c (3 for a zero-mean Gaussian; large for heavy tails).</summary>
    public double ChannelKurtosis(int c)
    {
        if (Tokens == 0) return double.NaN;
        double m2 = ChannelSumSquares[c] / Tokens;
        return m2 > 0 ? ChannelSumFourth[c] / Tokens / (m2 * m2) : double.NaN;
    }

    /// <summary>max(|max|, |min|) of channel c.</summary>
    public double ChannelAbsMax(int c) => Math.Max(Math.Abs(ChannelMax[c]), Math.Abs(ChannelMin[c]));

    /// <summary>Merges one batch of an activation point's outputs (shapes as <see cref="ProbeStatistic"/> documents).</summary>
    public void AddActivationBatch(ActivationBatch batch, BatchTokens tokens)
    {
        int c = Channels;
        if (batch.ChannelMax.Length != c) throw new ArgumentException($"probe '{Id}': {batch.ChannelMax.Length} channels in the batch, {c} expected");
        int rows = tokens.Batch * tokens.SequenceLength;
        if (batch.TokenMaxAbs.Length != rows) throw new ArgumentException($"probe '{Id}': {batch.TokenMaxAbs.Length} token rows, {rows} expected");
        for (int i = 0; i < c; i++)
        {
            ChannelMax[i] = Math.Max(ChannelMax[i], batch.ChannelMax[i]);
            ChannelMin[i] = Math.Min(ChannelMin[i], batch.ChannelMin[i]);
            ChannelSum[i] += batch.ChannelSum[i];
            ChannelSumSquares[i] += batch.ChannelSumSquares[i];
            ChannelSumFourth[i] += batch.ChannelSumFourth[i];
            ChannelAboveCount[i] += (long)Math.Round(batch.ChannelAboveCount[i]);
        }
        for (int row = 0; row < rows; row++)
        {
            int b = row / tokens.SequenceLength, s = row % tokens.SequenceLength;
            var summary = new TokenSummary(tokens.At(b, s), batch.TokenMaxAbs[row], batch.TokenMedianAbs[row], (int)batch.TokenArgMaxChannel[row]);
            TokenMaxAbs.Add(summary.MaxAbs);
            TokenMedianAbs.Add(summary.MedianAbs);
            int position = summary.Token.Position;
            if (position < LeadingPositions)
                PositionMaxAbs[position] = double.IsNaN(PositionMaxAbs[position]) ? summary.MaxAbs : Math.Max(PositionMaxAbs[position], summary.MaxAbs);
            Keep(LargestTokens, summary, static t => t.MaxAbs);
            Keep(HighestRatioTokens, summary, static t => t.Ratio);
        }
        for (int k = 0; k < batch.TopKAbs.Length; k++)
        {
            long flat = batch.TopKIndex[k];
            int channel = (int)(flat % c);
            long row = flat / c;
            var entry = new TopEntry(batch.TopKValue[k], tokens.At((int)(row / tokens.SequenceLength), (int)(row % tokens.SequenceLength)), channel);
            Keep(Top, entry, static e => e.Abs, TopK);
        }
        Tokens += rows;
    }

    /// <summary>Merges one batch of an attention point's [B, H, P] mass summed over the batch's <paramref name="queries"/>
    /// queries per row. P may differ between batches (a one-token step at position t sees min(P, t + 1) keys): the arrays grow.</summary>
    public void AddAttentionBatch(ReadOnlySpan<float> mass, int batch, int heads, int positions, int queries)
    {
        if (mass.Length != batch * heads * positions) throw new ArgumentException($"probe '{Id}': attention mass has {mass.Length} values, {batch}x{heads}x{positions} expected");
        AttentionMass ??= Enumerable.Range(0, heads).Select(_ => Array.Empty<double>()).ToArray();
        if (AttentionMass.Length != heads)
            throw new ArgumentException($"probe '{Id}': attention mass has {heads} heads, earlier batches had {AttentionMass.Length}");
        if (AttentionMass[0].Length < positions)
        {
            for (int h = 0; h < heads; h++)
            {
                var grown = new double[positions];
                AttentionMass[h].CopyTo(grown, 0);
                AttentionMass[h] = grown;
            }
            var counts = new long[positions];
            AttentionQueriesPerPosition.CopyTo(counts, 0);
            AttentionQueriesPerPosition = counts;
        }
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int p = 0; p < positions; p++)
                    AttentionMass[h][p] += mass[(b * heads + h) * positions + p];
        for (int p = 0; p < positions; p++) AttentionQueriesPerPosition[p] += (long)batch * queries;
        Tokens += (long)batch * queries;
    }

    /// <summary>Attention points: queries summed into <see cref="AttentionMass"/> at each key position (every query of a
    /// batch whose key range included the position; for a causal model fed whole windows that includes queries before the
    /// position, whose mass there is 0, so only position 0's mean is exact per query).</summary>
    public long[] AttentionQueriesPerPosition { get; private set; } = [];

    /// <summary>Queries summed at key position 0 (every query sees it).</summary>
    public long AttentionQueries => AttentionQueriesPerPosition.Length == 0 ? 0 : AttentionQueriesPerPosition[0];

    /// <summary>Mean probability mass head h puts on key position p per query.</summary>
    public double MeanAttentionMass(int head, int position) =>
        AttentionMass is null || position >= AttentionQueriesPerPosition.Length || AttentionQueriesPerPosition[position] == 0
            ? double.NaN : AttentionMass[head][position] / AttentionQueriesPerPosition[position];

    /// <summary>Restores the counters of a point read back from a stats file (Reporting's StatsFile). The channel arrays,
    /// kept lists and histograms are filled in place; these three have no public setter because merging owns them.</summary>
    public void RestoreCounters(long tokens, double[][]? attentionMass, long[] attentionQueriesPerPosition)
    {
        ArgumentNullException.ThrowIfNull(attentionQueriesPerPosition);
        if (tokens < 0 || attentionQueriesPerPosition.Any(q => q < 0)) throw new ArgumentException($"probe '{Id}': negative token or query count");
        if (attentionMass is not null && (attentionMass.Length == 0 || attentionMass.Any(row => row.Length != attentionMass[0].Length)))
            throw new ArgumentException($"probe '{Id}': attention mass must be a non-empty [heads][positions] rectangle");
        if (attentionMass is not null && attentionMass[0].Length != attentionQueriesPerPosition.Length)
            throw new ArgumentException($"probe '{Id}': {attentionQueriesPerPosition.Length} query counts for {attentionMass[0].Length} attention positions");
        Tokens = tokens;
        AttentionMass = attentionMass;
        AttentionQueriesPerPosition = attentionQueriesPerPosition;
    }

    private static void Keep<T>(List<T> list, T item, Func<T, double> key, int capacity = KeptTokens)
    {
        double k = key(item);
        if (double.IsNaN(k)) return;
        if (list.Count >= capacity && key(list[^1]) >= k) return;
        int at = list.FindIndex(e => key(e) < k);
        if (at < 0) list.Add(item); else list.Insert(at, item);
        if (list.Count > capacity) list.RemoveAt(list.Count - 1);
    }

    private static double[] Filled(int n, double value)
    {
        var a = new double[n];
        Array.Fill(a, value);
        return a;
    }
}

/// <summary>The outputs of one activation point for one batch, read in place from the session's outputs.</summary>
public readonly ref struct ActivationBatch
{
    public ReadOnlySpan<float> ChannelMax { get; init; }
    public ReadOnlySpan<float> ChannelMin { get; init; }
    public ReadOnlySpan<float> ChannelSum { get; init; }
    public ReadOnlySpan<float> ChannelSumSquares { get; init; }
    public ReadOnlySpan<float> ChannelSumFourth { get; init; }
    public ReadOnlySpan<float> ChannelAboveCount { get; init; }
    public ReadOnlySpan<float> TokenMaxAbs { get; init; }
    public ReadOnlySpan<float> TokenMedianAbs { get; init; }
    public ReadOnlySpan<long> TokenArgMaxChannel { get; init; }
    public ReadOnlySpan<float> TopKAbs { get; init; }
    public ReadOnlySpan<long> TopKIndex { get; init; }
    public ReadOnlySpan<float> TopKValue { get; init; }
}

/// <summary>Everything one calibration run measured: the manifest it ran with, statistics per point (by id), and what was fed.</summary>
public sealed class CalibrationStatistics
{
    public CalibrationStatistics(ProbeManifest manifest)
    {
        Manifest = manifest;
    }

    public ProbeManifest Manifest { get; }
    public Dictionary<string, PointStatistics> Points { get; } = new(StringComparer.Ordinal);
    /// <summary>Tokens fed (every window, padding never counted).</summary>
    public long Tokens { get; set; }
    public int Windows { get; set; }
    /// <summary>Text of the token ids the kept lists refer to (filled by the runner from its tokenizer).</summary>
    public Dictionary<int, string> TokenTexts { get; } = [];

    public PointStatistics? this[string id] => Points.GetValueOrDefault(id);
}
