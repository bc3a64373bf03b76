using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Reporting.Stats;

/// <summary>Converts <see cref="CalibrationStatistics"/> to the stats.json records and back, checking on the way back
/// everything the records cannot promise (array lengths, ids that match the manifest) so a damaged file fails with the
/// field at fault instead of an index error deep inside the analysis.</summary>
internal static class StatsMapping
{
    public static StatsDocument ToDocument(CalibrationStatistics statistics, RunSettings? run) => new()
    {
        SchemaVersion = StatsFile.CurrentSchemaVersion,
        Format = StatsFile.FormatName,
        Manifest = statistics.Manifest,
        Corpus = new CorpusRecord
        {
            Tokens = statistics.Tokens,
            Windows = statistics.Windows,
            Run = run,
            TokenTexts = new SortedDictionary<int, string>(statistics.TokenTexts),
        },
        Points = OrderedPoints(statistics).Select(ToRecord).ToList(),
    };

    public static StatsFileContents FromDocument(StatsDocument document)
    {
        var statistics = new CalibrationStatistics(document.Manifest)
        {
            Tokens = document.Corpus.Tokens,
            Windows = document.Corpus.Windows,
        };
        foreach (var (id, text) in document.Corpus.TokenTexts) statistics.TokenTexts[id] = text;
        var manifestIds = document.Manifest.Points.Select(p => p.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var record in document.Points)
        {
            if (!manifestIds.Contains(record.Id)) throw new FormatException($"point '{record.Id}' is not in the manifest");
            if (!statistics.Points.TryAdd(record.Id, FromRecord(record))) throw new FormatException($"point '{record.Id}' appears twice");
        }
        return new StatsFileContents(statistics, document.Corpus.Run);
    }

    /// <summary>Manifest order first (embedding, then block by block), then any point the manifest does not list.</summary>
    private static IEnumerable<PointStatistics> OrderedPoints(CalibrationStatistics statistics)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var point in statistics.Manifest.Points)
            if (statistics.Points.TryGetValue(point.Id, out var s) && seen.Add(point.Id)) yield return s;
        foreach (var (id, s) in statistics.Points.OrderBy(p => p.Key, StringComparer.Ordinal))
            if (seen.Add(id)) yield return s;
    }

    private static PointRecord ToRecord(PointStatistics p) => new()
    {
        Id = p.Id,
        Channels = p.Channels,
        TopK = p.TopK,
        Tokens = p.Tokens,
        ChannelMax = p.ChannelMax,
        ChannelMin = p.ChannelMin,
        ChannelSum = p.ChannelSum,
        ChannelSumSquares = p.ChannelSumSquares,
        ChannelSumFourth = p.ChannelSumFourth,
        ChannelAboveCount = p.ChannelAboveCount,
        Top = p.Top.Select(e => new TopRecord(e.Value, e.Token, e.Channel)).ToList(),
        LargestTokens = p.LargestTokens.Select(ToRecord).ToList(),
        HighestRatioTokens = p.HighestRatioTokens.Select(ToRecord).ToList(),
        TokenMaxAbs = ToRecord(p.TokenMaxAbs),
        TokenMedianAbs = ToRecord(p.TokenMedianAbs),
        PositionMaxAbs = p.PositionMaxAbs,
        AttentionMass = p.AttentionMass,
        AttentionQueriesPerPosition = p.AttentionQueriesPerPosition,
    };

    private static TokenRecord ToRecord(TokenSummary t) => new(t.Token, t.MaxAbs, t.MedianAbs, t.ArgMaxChannel);

    private static HistogramRecord ToRecord(LogHistogram h)
    {
        var bins = h.Bins().ToArray();
        return new HistogramRecord
        {
            BinsPerOctave = LogHistogram.BinsPerOctave,
            MinExponent = LogHistogram.MinExponent,
            MaxExponent = LogHistogram.MaxExponent,
            Count = h.Count,
            Lower = bins.Select(b => b.Lower).ToArray(),
            Counts = bins.Select(b => b.Count).ToArray(),
        };
    }

    private static PointStatistics FromRecord(PointRecord r)
    {
        string at = $"point '{r.Id}'";
        if (r.Channels < 0) throw new FormatException($"{at}: channels is {r.Channels}");
        if (r.TopK < 0) throw new FormatException($"{at}: topK is {r.TopK}");
        var p = new PointStatistics(r.Id, r.Channels, r.TopK);
        CopyChannels(r.ChannelMax, p.ChannelMax, at, "channelMax");
        CopyChannels(r.ChannelMin, p.ChannelMin, at, "channelMin");
        CopyChannels(r.ChannelSum, p.ChannelSum, at, "channelSum");
        CopyChannels(r.ChannelSumSquares, p.ChannelSumSquares, at, "channelSumSquares");
        CopyChannels(r.ChannelSumFourth, p.ChannelSumFourth, at, "channelSumFourth");
        CopyChannels(r.ChannelAboveCount, p.ChannelAboveCount, at, "channelAboveCount");
        if (r.PositionMaxAbs.Length != p.PositionMaxAbs.Length)
            throw new FormatException($"{at}: positionMaxAbs has {r.PositionMaxAbs.Length} values, {p.PositionMaxAbs.Length} expected");
        r.PositionMaxAbs.CopyTo(p.PositionMaxAbs, 0);
        foreach (var e in r.Top)
        {
            CheckChannel(e.Channel, r.Channels, at, "top");
            p.Top.Add(new TopEntry(e.Value, e.Token, e.Channel));
        }
        p.LargestTokens.AddRange(r.LargestTokens.Select(t => FromRecord(t, r.Channels, at, "largestTokens")));
        p.HighestRatioTokens.AddRange(r.HighestRatioTokens.Select(t => FromRecord(t, r.Channels, at, "highestRatioTokens")));
        p.TokenMaxAbs.Merge(FromRecord(r.TokenMaxAbs, at, "tokenMaxAbs"));
        p.TokenMedianAbs.Merge(FromRecord(r.TokenMedianAbs, at, "tokenMedianAbs"));
        try { p.RestoreCounters(r.Tokens, r.AttentionMass, r.AttentionQueriesPerPosition); }
        catch (ArgumentException ex) { throw new FormatException(ex.Message, ex); }
        return p;
    }

    private static TokenSummary FromRecord(TokenRecord t, int channels, string at, string field)
    {
        CheckChannel(t.ArgMaxChannel, channels, at, field);
        return new TokenSummary(t.Token, t.MaxAbs, t.MedianAbs, t.ArgMaxChannel);
    }

    private static LogHistogram FromRecord(HistogramRecord h, string at, string field)
    {
        if (h.BinsPerOctave != LogHistogram.BinsPerOctave || h.MinExponent != LogHistogram.MinExponent || h.MaxExponent != LogHistogram.MaxExponent)
            throw new FormatException($"{at}: {field} has {h.BinsPerOctave} bins per octave from 2^{h.MinExponent} to 2^{h.MaxExponent}; " +
                $"this tool uses {LogHistogram.BinsPerOctave} from 2^{LogHistogram.MinExponent} to 2^{LogHistogram.MaxExponent}");
        if (h.Lower.Length != h.Counts.Length) throw new FormatException($"{at}: {field} has {h.Lower.Length} lower edges and {h.Counts.Length} counts");
        if (h.Counts.Any(c => c < 0) || h.Lower.Any(l => !(l >= 0))) throw new FormatException($"{at}: {field} has a negative count or edge");
        var histogram = LogHistogram.FromBins(h.Lower.Zip(h.Counts));
        if (histogram.Count != h.Count) throw new FormatException($"{at}: {field} counts add up to {histogram.Count}, not {h.Count}");
        return histogram;
    }

    private static void CopyChannels<T>(T[] from, T[] to, string at, string field)
    {
        if (from.Length != to.Length) throw new FormatException($"{at}: {field} has {from.Length} values, {to.Length} channels expected");
        from.CopyTo(to, 0);
    }

    private static void CheckChannel(int channel, int channels, string at, string field)
    {
        if (channel < 0 || channel >= channels) throw new FormatException($"{at}: {field} names channel {channel}, outside 0..{channels - 1}");
    }
}
