using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Reporting.Stats;

// The stats.json schema, version 1. These records are the file's shape; StatsMapping converts them to and from
// CalibrationStatistics. See StatsFile for the field-by-field description.

/// <summary>The whole file.</summary>
internal sealed record StatsDocument
{
    public required int SchemaVersion { get; init; }
    /// <summary>Always <see cref="StatsFile.FormatName"/>: tells this file from the other JSON files next to it.</summary>
    public required string Format { get; init; }
    /// <summary>How non-finite numbers are spelled (documentation for a reader opening the file by hand).</summary>
    public string NonFiniteNumbers { get; init; } = StatsFile.NonFiniteNote;
    public required ProbeManifest Manifest { get; init; }
    public required CorpusRecord Corpus { get; init; }
    public required IReadOnlyList<PointRecord> Points { get; init; }
}

internal sealed record CorpusRecord
{
    public required long Tokens { get; init; }
    public required int Windows { get; init; }
    /// <summary>The settings the run was fed with (null when the caller gave none).</summary>
    public RunSettings? Run { get; init; }
    /// <summary>Token id (as a decimal string: JSON object keys are strings) to its text.</summary>
    public required IReadOnlyDictionary<int, string> TokenTexts { get; init; }
}

internal sealed record PointRecord
{
    public required string Id { get; init; }
    public required int Channels { get; init; }
    public required int TopK { get; init; }
    public required long Tokens { get; init; }
    public required double[] ChannelMax { get; init; }
    public required double[] ChannelMin { get; init; }
    public required double[] ChannelSum { get; init; }
    public required double[] ChannelSumSquares { get; init; }
    public required double[] ChannelSumFourth { get; init; }
    public required long[] ChannelAboveCount { get; init; }
    public required IReadOnlyList<TopRecord> Top { get; init; }
    public required IReadOnlyList<TokenRecord> LargestTokens { get; init; }
    public required IReadOnlyList<TokenRecord> HighestRatioTokens { get; init; }
    public required HistogramRecord TokenMaxAbs { get; init; }
    public required HistogramRecord TokenMedianAbs { get; init; }
    public required double[] PositionMaxAbs { get; init; }
    public required double[][]? AttentionMass { get; init; }
    public required long[] AttentionQueriesPerPosition { get; init; }
}

internal sealed record TopRecord(double Value, TokenRef Token, int Channel);

internal sealed record TokenRecord(TokenRef Token, double MaxAbs, double MedianAbs, int ArgMaxChannel);

/// <summary>A <see cref="LogHistogram"/>: its layout constants (so the file can be read without this code) and its
/// non-empty bins as parallel arrays of lower edges and counts.</summary>
internal sealed record HistogramRecord
{
    public required int BinsPerOctave { get; init; }
    public required int MinExponent { get; init; }
    public required int MaxExponent { get; init; }
    public required long Count { get; init; }
    public required double[] Lower { get; init; }
    public required long[] Counts { get; init; }
}
