using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Calibration;

/// <summary>Merges one run's probe outputs into <see cref="CalibrationStatistics"/>, reading each output in place from
/// ONNX Runtime's memory (only the statistics are ever fetched, never the probed tensors).</summary>
public static class ProbeOutputDecoder
{
    /// <summary>The graph outputs a run must request for <paramref name="manifest"/>'s points.</summary>
    public static IReadOnlyList<string> OutputNames(ProbeManifest manifest) =>
        manifest.Points.SelectMany(p => p.Outputs.Values).ToArray();

    public static void Merge(CalibrationStatistics statistics, SessionOutputs outputs, BatchTokens tokens)
    {
        foreach (var point in statistics.Manifest.Points)
        {
            if (point.Kind == ProbeKind.AttentionProbabilities)
            {
                var mass = outputs[point.Outputs[ProbeStatistic.AttentionMass]];
                if (mass.Dims.Count != 3) throw new InvalidDataException($"probe '{point.Id}': attention mass has rank {mass.Dims.Count}, 3 expected");
                int heads = (int)mass.Dims[1], positions = (int)mass.Dims[2];
                var stats = Get(statistics, point.Id, heads, statistics.Manifest.Settings.TopK);
                stats.AddAttentionBatch(Floats(mass), (int)mass.Dims[0], heads, positions, tokens.SequenceLength);
                continue;
            }
            var channelMax = outputs[point.Outputs[ProbeStatistic.ChannelMax]];
            var s = Get(statistics, point.Id, (int)channelMax.ElementCount, statistics.Manifest.Settings.TopK);
            s.AddActivationBatch(new ActivationBatch
            {
                ChannelMax = Floats(channelMax),
                ChannelMin = Floats(outputs[point.Outputs[ProbeStatistic.ChannelMin]]),
                ChannelSum = Floats(outputs[point.Outputs[ProbeStatistic.ChannelSum]]),
                ChannelSumSquares = Floats(outputs[point.Outputs[ProbeStatistic.ChannelSumSquares]]),
                ChannelSumFourth = Floats(outputs[point.Outputs[ProbeStatistic.ChannelSumFourth]]),
                ChannelAboveCount = Floats(outputs[point.Outputs[ProbeStatistic.ChannelAboveCount]]),
                TokenMaxAbs = Floats(outputs[point.Outputs[ProbeStatistic.TokenMaxAbs]]),
                TokenMedianAbs = Floats(outputs[point.Outputs[ProbeStatistic.TokenMedianAbs]]),
                TokenArgMaxChannel = Longs(outputs[point.Outputs[ProbeStatistic.TokenArgMaxChannel]]),
                TopKAbs = Floats(outputs[point.Outputs[ProbeStatistic.TopKAbs]]),
                TopKIndex = Longs(outputs[point.Outputs[ProbeStatistic.TopKIndex]]),
                TopKValue = Floats(outputs[point.Outputs[ProbeStatistic.TopKValue]]),
            }, tokens);
        }
    }

    private static PointStatistics Get(CalibrationStatistics statistics, string id, int channels, int topK)
    {
        if (!statistics.Points.TryGetValue(id, out var s))
            statistics.Points[id] = s = new PointStatistics(id, channels, topK);
        return s;
    }

    private static ReadOnlySpan<float> Floats(OrtTensor t) => t.DataType == TensorDataType.Float
        ? t.AsSpan<float>()
        : throw new InvalidDataException($"probe output '{t.Name}' is {t.DataType.OnnxName()}, FLOAT expected");

    private static ReadOnlySpan<long> Longs(OrtTensor t) => t.DataType == TensorDataType.Int64
        ? t.AsSpan<long>()
        : throw new InvalidDataException($"probe output '{t.Name}' is {t.DataType.OnnxName()}, INT64 expected");
}
