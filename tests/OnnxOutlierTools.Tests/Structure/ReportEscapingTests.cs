using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>The structure report prints names, op types and domains from the file; a newline, escape sequence
/// or bidi override in them must come out escaped, never as a forged line or a terminal command.</summary>
public class ReportEscapingTests
{
    // A newline that starts a forged report line, a CSI clear-screen, an OSC title, a right-to-left override.
    private const string Evil = "\nhint: forged \u001b[2J\u001b]0;t\u0007\u202e";
    private const string EvilEscaped = "\\nhint: forged \\e[2J\\e]0;t\\u0007\\u202e";
    private const string Benign = "_plain_______________";

    [Theory]
    [InlineData("gpt2-ort-fused-fp32", "past.onnx")]   // shared initializers, EmbedLayerNormalization, skip norms
    [InlineData("gpt2-torch-past", "gpt2_past.onnx")] // decomposed norms, Gather embedding, stacked KV cache
    [InlineData("llama-torch-past", "model.onnx")]    // RMSNorm, GQA repeat-kv, position ids hint
    public void ToText_NamesWithControlCharacters_AreEscapedAndForgeNoLines(string flavour, string file)
    {
        string plain = Report(flavour, file, Benign, out int plainBlocks);
        string evil = Report(flavour, file, Evil, out int evilBlocks);
        Assert.Equal(plainBlocks, evilBlocks);
        Assert.Equal(Lines(plain).Length, Lines(evil).Length);
        Assert.All(Lines(evil), line => Assert.DoesNotContain(line, c => char.IsControl(c) || c == '\u202e'));
        Assert.DoesNotContain(Lines(evil), l => l.StartsWith("hint: forged", StringComparison.Ordinal));
        Assert.Contains("lm head         ", evil);
        Assert.Contains(EvilEscaped, evil);
        // The escaped report is the plain one with the suffix swapped: nothing else moved.
        Assert.Equal(plain.Replace(Benign, EvilEscaped, StringComparison.Ordinal), evil);
    }

    [Fact]
    public void ToText_UnrecognizedGraph_EscapesOpTypesDomainsAndGraphNamesInNearMisses()
    {
        var b = new GraphBuilder("graph" + Evil);
        var x = b.Input("x" + Evil, TensorDataType.Float, 1, 8);
        var y = b.Node("Op" + Evil, [x], domain: "evil.domain" + Evil, name: "n" + Evil)[0];
        // Both operands come from the oddly named node, so the Add-rooted rules' near misses name it.
        b.Output(b.Op("Add", y, y), TensorDataType.Float, 1, 8);
        var result = StructureRecognizer.RecognizeGraph(b.Graph);
        Assert.False(result.Recognized);
        string text = StructureReport.ToText(result with { GraphsSearched = ["main graph ('graph" + Evil + "')"] }, explain: true);
        Assert.All(Lines(text), line => Assert.DoesNotContain(line, c => char.IsControl(c) || c == '\u202e'));
        Assert.DoesNotContain(Lines(text), l => l.StartsWith("hint: forged", StringComparison.Ordinal));
        Assert.Contains($"graph '{"graph" + EvilEscaped}'", text);          // the message
        Assert.Contains($"found evil.domain{EvilEscaped}::Op{EvilEscaped} 'n{EvilEscaped}'", text); // a near miss naming the node
    }

    private static string[] Lines(string text) => text.Split(Environment.NewLine);

    /// <summary>The --explain report of a fixture whose every graph, node and value name has <paramref name="suffix"/> appended.</summary>
    private static string Report(string flavour, string file, string suffix, out int blocks)
    {
        using var model = ModelReader.Load(Fixtures.Export(flavour, file));
        foreach (var graph in model.Graph.SelfAndSubgraphs())
        {
            graph.Name += suffix;
            foreach (var node in graph.Nodes) node.Name += suffix;
            foreach (var value in graph.Values().ToList()) value.Name += suffix;
        }
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        blocks = result.Structure!.Blocks.Count;
        return StructureReport.ToText(result, explain: true);
    }
}
