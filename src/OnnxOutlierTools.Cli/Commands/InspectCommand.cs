using System.CommandLine;
using OnnxOutlierTools.Inspection;
using System.Text.Json.Nodes;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>inspect MODEL [--json] [--layers [--explain]]</c>: what a model contains, without reading
/// tensor data; with <c>--layers</c>, its recognized transformer structure. MODEL may be a model folder.</summary>
public static class InspectCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL")
        {
            Description = "The .onnx model file, or a model folder: the decoder its genai_config.json names, else model.onnx, " +
                "onnx/model.onnx or its only .onnx file. Its external data files may be absent (they are reported as absent).",
        };
        var json = new Option<bool>("--json")
        {
            Description = "Write the summary as JSON (camelCase, stable property names) instead of text.",
        };
        var layers = new Option<bool>("--layers")
        {
            Description = "Also recognize the transformer structure: per block the residual stream in/out, norms (gain, bias), " +
                "q/k/v/o or packed qkv, attention form and heads, KV cache, FFN gate/up/down and the down-projection input; " +
                "embeddings, final norm, LM head. With --json it is the 'layers' property. Exit code 3 if no blocks are recognized.",
        };
        var explain = new Option<bool>("--explain")
        {
            Description = "With --layers: add each recognition rule's matches and best near miss (the tracer).",
        };
        var embeddingModel = new Option<string?>("--embedding-model")
        {
            Description = "With --layers: the model holding the token embedding of a decoder that takes inputs_embeds (split exports " +
                "such as Qwen3.5's): its Gather of the token table is reported as the decoder's embedding and its width checked.",
            HelpName = "PATH",
        };
        var command = new Command("inspect",
            "Summarize a model: producer, opsets, inputs and outputs, node and op-type counts (nested graphs " +
            "included), initializers by data type, and external data files. Reads no tensor data.")
        {
            model,
            json,
            layers,
            explain,
            embeddingModel,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            if (parseResult.GetValue(explain) && !parseResult.GetValue(layers)) throw new UsageException("--explain needs --layers");
            if (parseResult.GetValue(embeddingModel) is not null && !parseResult.GetValue(layers)) throw new UsageException("--embedding-model needs --layers");
            return Execute(parseResult.GetValue(model)!, parseResult.GetValue(json), context.Out, parseResult.GetValue(layers), parseResult.GetValue(explain),
                parseResult.GetValue(embeddingModel));
        }));
        return command;
    }

    public static int Execute(string path, bool json, TextWriter stdout, bool layers = false, bool explain = false, string? embeddingModel = null)
    {
        ModelSummary summary;
        RecognitionResult? structure = null;
        path = ModelLocator.Locate(path);
        using (var model = ModelReader.Load(path, new LoadOptions { RequireExternalData = false }))
        {
            summary = ModelSummary.Create(model);
            if (layers) structure = StructureRecognizer.Recognize(model);
        }
        if (structure is not null && embeddingModel is not null)
        {
            string embeddingPath = ModelLocator.Locate(embeddingModel);
            using var embedding = ModelReader.Load(embeddingPath, new LoadOptions { RequireExternalData = false });
            structure = SplitEmbeddingRecognizer.Link(structure, embedding, embeddingPath);
        }
        // Rendered in full before anything is written, so a failure never leaves half a report.
        string text;
        if (json)
        {
            if (structure is null) text = summary.ToJson() + Environment.NewLine;
            else
            {
                var node = JsonNode.Parse(summary.ToJson())!.AsObject();
                node["layers"] = JsonNode.Parse(StructureReport.Serialize(StructureReport.ToJson(structure, explain)));
                text = JsonOutput.Serialize(node) + Environment.NewLine;
            }
        }
        else
        {
            text = SummaryText.Render(summary, path);
            if (structure is not null) text += Environment.NewLine + StructureReport.ToText(structure, explain);
        }
        stdout.Write(text);
        return structure is { Recognized: false } ? ErrorHandler.NotRecognized : ErrorHandler.Success;
    }
}
