using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tests.Import;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Mitigation.SinkBias;

/// <summary>Rewrites a model with the sink bias into a folder, and compares the original model on prefix + text with the
/// rewritten model on the text alone (ORT CPU, optimizations off, both), for the whole prompt and token by token.</summary>
internal static class SinkBiasHarness
{
    public static ModelStructure Recognize(Model model, string path)
    {
        var recognized = StructureRecognizer.Recognize(model, Path.GetDirectoryName(path));
        Assert.True(recognized.Recognized, recognized.Message);
        return recognized.Structure!;
    }

    public static (string Path, CapturedSink Sink, PassResult Result) Rewrite(string source, string folder, SinkPrefix prefix)
    {
        using var model = ModelReader.Load(source);
        var structure = Recognize(model, source);
        var sink = SinkCapture.Capture(model, structure, prefix);
        var result = model.Apply(new SinkBiasPass(structure, sink));
        Assert.True(result.Changed);
        string path = Path.Combine(Directory.CreateDirectory(folder).FullName, "model.onnx");
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        return (path, sink, result);
    }

    /// <summary>Original on prefix + text against rewritten on text: the whole prompt, and (for KV-cache models) the text's
    /// first <paramref name="split"/> tokens as a prompt followed by one token per step, each side feeding back its own
    /// present cache (the rewritten one must hold the text only). Returns the largest |difference| of the logits.</summary>
    public static double Compare(string original, string rewritten, int[] prefix, int[] text, int split, ITestOutputHelper output, bool wholePrompt = true)
    {
        using var o = new KvCacheDecoder(original);
        using var r = new KvCacheDecoder(rewritten);
        double worst = 0;
        if (wholePrompt)
        {
            var full = o.Run([.. prefix, .. text]).Logits;
            var mine = r.Run(text);
            worst = Diff.MaxAbs(full[prefix.Length..], mine.Logits);
            output.WriteLine($"whole prompt ({text.Length} tokens after a {prefix.Length}-token prefix): max |diff| = {worst:E3}");
            if (mine.Present is { } present) Assert.Equal(text.Length, present.Length);
            // The baked prefix matters: the original on the text alone (no prefix) is far from both.
            double withoutPrefix = Diff.MaxAbs(o.Run(text).Logits, mine.Logits);
            output.WriteLine($"original on the text alone vs rewritten: max |diff| = {withoutPrefix:E3} (the prefix's effect)");
            Assert.True(withoutPrefix > 1e-2, $"the prefix changes nothing ({withoutPrefix}); the comparison would prove nothing");
        }
        if (o.Layers == 0) return worst;
        var os = o.Run([.. prefix, .. text[..split]]);
        var rs = r.Run(text[..split]);
        double decode = Diff.MaxAbs(os.Logits[prefix.Length..], rs.Logits);
        Assert.Equal(split, rs.Present!.Length);
        for (int t = split; t < text.Length; t++)
        {
            os = o.Run([text[t]], os.Present);
            rs = r.Run([text[t]], rs.Present);
            Assert.Equal(t + 1, rs.Present!.Length);
            decode = Math.Max(decode, Diff.MaxAbs(os.Logits, rs.Logits));
        }
        output.WriteLine($"prompt of {split} then {text.Length - split} single-token steps with the KV cache: max |diff| = {decode:E3}");
        return Math.Max(worst, decode);
    }

    /// <summary>Per block, the largest |x| of the residual stream after the block over every position of a run on
    /// <paramref name="ids"/>, and the largest |x| of <paramref name="channels"/> there.</summary>
    public static (double[] All, double[] Channels) ResidualMax(string path, int[] ids, int[] channels)
    {
        using var model = ModelReader.Load(path);
        var structure = Recognize(model, path);
        var streams = structure.Blocks.Select(b => b.ResidualOut.Value ?? throw new InvalidOperationException($"block {b.Index}'s residual is not emitted")).ToList();
        foreach (var v in streams) if (!model.Graph.Outputs.Contains(v)) model.Graph.AddOutput(v);
        using var session = InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        var feeds = FeedPlan.Create(path, session.Inputs, session.OutputNames, structure.Inputs.InputIds?.Name);
        var outputs = session.Run(feeds.Build(1, ids.Length, ids, 0, null), streams.Select(v => v.Name));
        var all = new double[streams.Count];
        var chosen = new double[streams.Count];
        for (int b = 0; b < streams.Count; b++)
        {
            var x = outputs[b].ToSingleArray();
            int width = (int)outputs[b].Dims[^1];
            for (int i = 0; i < x.Length; i++)
            {
                double a = Math.Abs(x[i]);
                all[b] = Math.Max(all[b], a);
                if (channels.Contains(i % width)) chosen[b] = Math.Max(chosen[b], a);
            }
        }
        return (all, chosen);
    }
}
